// flashstock storefront: live stock on the catalog and product pages, and buying.
//
// Stock follows a gateway's event stream (GET /v1/stream, server-sent events named "stock"):
// what is available and what is held in carts. Every figure carries the log index it is as fresh as; an older figure never overwrites a newer
// one. After a "lagged" event or a reconnection the page reloads the figures it shows.
//
// Failover: <body data-gateways> lists every gateway's public origin (gateway.public_origins).
// The page reads, streams and buys through one gateway, the one that served it first; when that
// one stops answering (a network error, or no answer within data-request-timeout-ms, which is
// gateway.page_request_timeout_ms) it moves on to another. The other gateways grant this page's
// origin CORS. With no list the page uses its own gateway only.
//
// Buying: one idempotency key per purchase attempt, made here, kept across gateways. An unknown
// outcome (504 outcome_unknown, a 5xx that is not a definite refusal, or no answer) is resolved
// by sending the same attempt again with the same key, to the next gateway, until a definite
// answer comes back: a retry never buys twice, whichever gateway it reaches. No answer at all
// moves on to a gateway not yet asked at once; answers that say "unknown" are asked again after
// a growing pause. 503 (overloaded, unavailable, not_ready) or 429 (rate_limited: too many
// purchases from this address) while nothing is unknown means nothing was bought: a 503 is
// tried on the gateways not yet asked before the page says so. The key is given up after
// data-retry-horizon-ms (limits.client_retry_horizon_ms), the longest its outcome is kept: the
// page then says it could not learn the outcome.
'use strict';

(function () {
  const body = document.body;
  /** How long one request may go unanswered before its gateway is taken for gone. */
  const REQUEST_TIMEOUT_MS = Number(body.dataset.requestTimeoutMs) || 6000;
  /** How long one purchase attempt's key may be retried. */
  const RETRY_HORIZON_MS = Number(body.dataset.retryHorizonMs) || 3600000;

  // ---- gateways ----

  /**
   * The gateways this page may use: the one that served it, then the others in a random order,
   * so that the buyers of a gateway that dies spread over the rest. `current` is where reads,
   * streams and new purchases go; it moves on when that gateway stops answering.
   */
  const gateways = (function () {
    const own = location.origin;
    const others = (body.dataset.gateways || '').split(' ').filter((o) => o && o !== own);
    for (let i = others.length - 1; i > 0; i -= 1) {
      const j = Math.floor(Math.random() * (i + 1));
      [others[i], others[j]] = [others[j], others[i]];
    }
    const list = [own, ...others];
    const moved = [];
    let current = 0;
    return {
      list,
      get current() { return current; },
      /** `path` on gateway `at`: relative on the page's own gateway. */
      url(at, path) { return list[at] === own ? path : list[at] + path; },
      next(at) { return (at + 1) % list.length; },
      /** Gateway `at` answered: use it from now on. */
      answered(at) { current = at; },
      /** Gateway `at` did not answer: if it is the current one, move on and tell who follows. */
      failed(at) {
        if (current !== at) return;
        current = (at + 1) % list.length;
        for (const listener of moved) listener(at);
      },
      /** `listener(from)` is called when the page moves on from gateway `from`. */
      onMove(listener) { moved.push(listener); },
    };
  })();

  /** GET `path` as JSON from the current gateway; null when it fails (a timeout moves on). */
  async function read(path) {
    const at = gateways.current;
    try {
      const response = await fetch(gateways.url(at, path),
        { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      if (!response.ok) return null;
      gateways.answered(at);
      return await response.json();
    } catch (_) {
      gateways.failed(at);
      return null;
    }
  }

  // ---- stock figures ----

  /**
   * Show `stock` available and `held` in carts in `container` (an element with a .stock figure
   * and maybe a .held one), as fresh as `index`. `held` undefined: unchanged.
   */
  function showStock(container, stock, held, index) {
    const known = Number(container.dataset.index || 0);
    if (index < known) return false;
    container.dataset.index = String(index);
    const figure = container.querySelector('.stock');
    const before = figure.textContent;
    figure.textContent = String(stock);
    container.classList.toggle('sold-out', stock === 0);
    if (before !== figure.textContent) figure.dataset.changedAt = String(Date.now());
    const heldFigure = container.querySelector('.held');
    if (heldFigure && held !== undefined) {
      const count = Number(held) || 0;
      if (heldFigure.textContent !== String(count)) {
        heldFigure.textContent = String(count);
        heldFigure.dataset.changedAt = String(Date.now());
      }
      container.querySelector('.held-note').hidden = count === 0;
    }
    return before !== figure.textContent;
  }

  /** First pause before a stream is opened again; it doubles while opening fails. */
  const STREAM_RETRY_MS = 1000;
  const STREAM_RETRY_MAX_MS = 10000;

  /**
   * Follow the stock stream at `path` on the current gateway; `resync` is called when events
   * may have been missed. The page manages reconnection itself, never the browser: a stream
   * that was open and ends (the gateway ends every stream after its lifetime) is opened again
   * on the current gateway; one that fails before it opens (the gateway is gone, refuses with
   * 503 when holding its most streams, or does not answer within the request timeout) marks
   * that gateway failed and is opened on the next, after a pause that grows while it fails,
   * spread out. A purchase that finds the stream's gateway gone moves the stream too.
   * `<body data-stream-gateway>` says where the stream is, `data-stream-state` how it is.
   */
  function followStock(path, onStock, resync) {
    let source = null;
    let at = 0;
    let opened = false;
    let reopening = false;
    let failures = 0;
    let openTimer = null;
    function connect() {
      at = gateways.current;
      opened = false;
      const mine = new EventSource(gateways.url(at, path));
      source = mine;
      body.dataset.streamGateway = gateways.list[at];
      body.dataset.streamState = 'connecting';
      openTimer = setTimeout(() => { if (source === mine && !opened) lost(true); }, REQUEST_TIMEOUT_MS);
      mine.addEventListener('stock', (event) => onStock(JSON.parse(event.data)));
      mine.addEventListener('lagged', resync);
      mine.addEventListener('open', () => {
        if (source !== mine) return;
        opened = true;
        failures = 0;
        body.dataset.streamState = 'open';
        clearTimeout(openTimer);
        gateways.answered(at);
        if (reopening) { reopening = false; resync(); }
      });
      mine.addEventListener('error', () => { if (source === mine) lost(!opened); });
    }
    function lost(gone) {
      source.close();
      source = null;
      body.dataset.streamState = 'closed';
      clearTimeout(openTimer);
      reopening = true;
      let wait = Math.random() * STREAM_RETRY_MS;
      if (gone) {
        gateways.failed(at);
        failures += 1;
        const pause = Math.min(STREAM_RETRY_MS * 2 ** (failures - 1), STREAM_RETRY_MAX_MS);
        wait = pause / 2 + Math.random() * pause / 2;
      }
      setTimeout(connect, wait);
    }
    gateways.onMove((from) => { if (source && at === from) lost(false); });
    connect();
  }

  // ---- catalog ----

  function catalogPage(list) {
    const news = document.getElementById('stock-news');
    const cards = new Map();
    for (const card of list.querySelectorAll('[data-product]')) {
      card.dataset.index = list.dataset.index;
      cards.set(card.dataset.product, card);
    }
    function update(id, stock, held, index) {
      const card = cards.get(id);
      if (!card) return;
      const wasSoldOut = card.classList.contains('sold-out');
      showStock(card, stock, held, index);
      const isSoldOut = card.classList.contains('sold-out');
      // Announce only what changes a shopper's options, not every sale.
      if (isSoldOut !== wasSoldOut && news) {
        const name = card.querySelector('h2').textContent;
        news.textContent = isSoldOut ? `${name} is sold out.` : `${name} is back in stock.`;
      }
    }
    async function reload() {
      const params = new URLSearchParams({ limit: list.dataset.limit });
      if (list.dataset.after) params.set('after', list.dataset.after);
      // On failure the stream's next reconnection calls again.
      const page = await read(`/v1/products?${params}`);
      if (!page) return;
      for (const product of page.products) {
        update(product.id, product.stock, product.held, page.applied_index);
      }
    }
    followStock('/v1/stream',
      (event) => update(event.product, event.stock, event.held, event.log_index), reload);
  }

  // ---- product ----

  /** A random UUID; crypto.randomUUID needs a secure context, getRandomValues does not. */
  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  /**
   * A JSON body, with every integer beyond 2^53 kept exactly as its digits: an order id carries
   * its incarnation in bits 56 to 62, which a JavaScript number would round. (A browser whose
   * reviver gets no source text keeps the number.)
   */
  async function readJson(response) {
    const text = await response.text();
    return JSON.parse(text, (_key, value, context) =>
      typeof value === 'number' && !Number.isSafeInteger(value) && context && context.source
        ? context.source : value);
  }

  /** The log index of the entry that placed an order: bits 16 to 55 of its id. */
  function orderLogIndex(orderId) {
    return Number((BigInt(orderId) >> 16n) & ((1n << 40n) - 1n));
  }

  /** How many are left, from an insufficient_stock message ("... has 3 left, 5 requested"). */
  function leftIn(message) {
    const match = /has (\d+) left/.exec(message || '');
    return match ? Number(match[1]) : null;
  }

  const RETRY_FIRST_MS = 300;
  const RETRY_MAX_MS = 5000;

  function productPage(article) {
    const id = article.dataset.product;
    const name = article.dataset.name;
    const form = document.getElementById('buy-form');
    const quantity = document.getElementById('quantity');
    const button = document.getElementById('buy');
    const result = document.getElementById('result');
    const limit = document.getElementById('limit');
    /** The purchase attempt in progress, or null. */
    let attempt = null;

    function soldOut() { return article.classList.contains('sold-out'); }
    function syncControls() {
      const busy = attempt !== null;
      button.disabled = busy || soldOut();
      quantity.disabled = busy || soldOut();
      button.textContent = soldOut() ? 'Sold out' : busy ? 'Buying…' : 'Buy now';
    }
    function say(state, ...parts) {
      result.dataset.state = state;
      result.replaceChildren(...parts);
    }
    function link(href, text) {
      const a = document.createElement('a');
      a.href = href;
      a.textContent = text;
      return a;
    }
    function stock(value, held, index) {
      showStock(article, value, held, index);
      syncControls();
    }
    function showLimit(perCustomer) {
      if (perCustomer === undefined || !limit) return;
      limit.hidden = !perCustomer;
      document.getElementById('limit-value').textContent = perCustomer ? String(perCustomer) : '';
    }

    /** The first gateway after `current.at` that this attempt has not asked yet, or null. */
    function untried(current) {
      for (let at = gateways.next(current.at); at !== current.at; at = gateways.next(at)) {
        if (!current.tried.has(at)) return at;
      }
      return null;
    }

    /** A definite answer came from gateway `at`: the attempt is over. */
    function settle(at) {
      attempt = null;
      gateways.answered(at);
      result.dataset.gateway = gateways.list[at];
    }

    async function send(current) {
      const at = current.at;
      let response = null;
      let body = null;
      try {
        response = await fetch(gateways.url(at, `/v1/products/${encodeURIComponent(id)}/purchase`), {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': current.key },
          body: JSON.stringify({ quantity: current.quantity }),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        body = await readJson(response).catch(() => null);
      } catch (_) {
        response = null; // network error or timeout: the outcome is unknown
      }
      if (attempt !== current) return;
      current.tried.add(at);
      const code = body && body.code;
      if (response && response.ok && body && body.order) {
        settle(at);
        const order = body.order;
        stock(order.remaining, undefined, orderLogIndex(order.id));
        // The order page is private: its link carries the order's token. It is on the gateway
        // that confirmed, which has applied the order.
        const orderPath = `/orders/${order.id}?token=${encodeURIComponent(order.token || '')}`;
        say('confirmed', 'Confirmed: ', link(gateways.url(at, orderPath), `order #${order.id}`),
          ` for ${order.quantity} × ${name}.`);
      } else if (response && response.status === 409 && code === 'insufficient_stock') {
        settle(at);
        const left = leftIn(body.message);
        if (left === 0) {
          say('sold-out', 'Sold out: nothing was bought.');
          // The stream brings the figure with its index; show the state at once meanwhile.
          article.classList.add('sold-out');
        } else {
          const count = left === null ? 'fewer' : `only ${left}`;
          say('insufficient', `Not enough stock: ${count} left. Nothing was bought; choose fewer.`);
        }
      } else if (response && response.status === 404) {
        settle(at);
        say('error', 'This product is no longer sold.');
      } else if (response && response.status === 503 && !current.unknown) {
        // Nothing was bought by any try so far: another gateway may take it.
        const other = untried(current);
        if (other !== null) {
          current.at = other;
          send(current);
          return;
        }
        settle(at);
        say('not-applied', 'The shop is too busy to take your order right now. Nothing was bought; please try again.');
      } else if (response && response.status === 429 && !current.unknown) {
        settle(at);
        const after = Number(response.headers.get('retry-after')) || 1;
        say('not-applied', `Too many orders from your connection right now. Nothing was bought; please try again in ${after} s.`);
      } else if (!response || response.status >= 500 || response.status === 429) {
        // Unknown (no answer, 504, another 5xx): keep the attempt and its key, and ask again
        // until the answer is definite. Once an outcome was unknown, a 503 or a 429 only says
        // that the retry was not applied, not an earlier try: keep asking then too, after the
        // Retry-After a 429 asks for.
        current.unknown = true;
        if (!response) gateways.failed(at);
        if (Date.now() - current.startedAt > RETRY_HORIZON_MS) {
          attempt = null;
          say('unknown', 'We could not learn whether your order went through. Please check your orders before you buy again.');
          syncControls();
          return;
        }
        say('checking', 'We could not confirm your order yet; checking…');
        const other = response ? null : untried(current);
        let wait = 0;
        if (other !== null) {
          // No answer: ask a gateway not asked yet, at once.
          current.at = other;
        } else {
          // Every gateway was asked, or this one answered "unknown": the next, after a pause.
          current.tried.clear();
          current.at = gateways.next(at);
          current.pauses += 1;
          const after = response && response.status === 429
            ? 1000 * (Number(response.headers.get('retry-after')) || 1) : 0;
          wait = Math.max(after, Math.min(RETRY_FIRST_MS * 2 ** (current.pauses - 1), RETRY_MAX_MS));
        }
        setTimeout(() => send(current), wait);
      } else {
        settle(at);
        say('error', (body && body.message) || `The order was refused (${response.status}). Nothing was bought.`);
      }
      syncControls();
    }

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (attempt !== null || soldOut()) return;
      const wanted = Number(quantity.value);
      if (!Number.isInteger(wanted) || wanted < 1) {
        say('error', 'Choose a quantity of at least 1.');
        quantity.focus();
        return;
      }
      attempt = {
        key: newKey(),
        quantity: wanted,
        startedAt: Date.now(),
        at: gateways.current, // the gateway the next try goes to
        tried: new Set(), // gateways asked since the last pause
        pauses: 0,
        unknown: false, // whether some try may have been applied
      };
      say('pending', 'Placing your order…');
      syncControls();
      send(attempt);
    });

    async function reload() {
      // On failure the stream's next reconnection calls again.
      const view = await read(`/v1/products/${encodeURIComponent(id)}`);
      if (!view) return;
      stock(view.product.stock, view.product.held, view.applied_index);
      showLimit(view.product.limit_per_customer || null);
    }
    followStock(`/v1/stream?product=${encodeURIComponent(id)}`, (event) => {
      stock(event.stock, event.held, event.log_index);
      showLimit(event.limit_per_customer || null);
    }, reload);
    syncControls();
  }

  const list = document.getElementById('catalog');
  if (list) catalogPage(list);
  const article = document.getElementById('product');
  if (article) productPage(article);
})();
