// flashstock storefront: live stock on the catalog and product pages, and buying.
//
// Stock follows a gateway's event stream (GET /v1/stream, server-sent events named "stock"):
// what is available and what is held in carts. Every figure carries the log index it is as
// fresh as; an older figure never overwrites a newer one. After a "lagged" event or a
// reconnection the page reloads the figures it shows.
//
// Failover: <body data-gateways> lists every gateway's public origin (gateway.public_origins).
// The page reads, streams and buys through one gateway, the one that served it first; when that
// one stops answering (a network error, or no answer within data-request-timeout-ms, which is
// gateway.page_request_timeout_ms) it moves on to another. The other gateways grant this page's
// origin CORS. With no list the page uses its own gateway only.
//
// Buying (write() below, the one routine for the page's writes): one idempotency key per
// purchase attempt, made here, kept across gateways. An unknown outcome (504 outcome_unknown, a
// 5xx that is not a definite refusal, or no answer) is resolved by sending the same attempt again with the same key, to the next gateway, until a definite
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

  // ---- writes ----

  const RETRY_FIRST_MS = 300;
  const RETRY_MAX_MS = 5000;
  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  /**
   * POST `payload` (JSON; undefined: no body) to `path` with a new idempotency key, again and
   * again with the same key until the answer is definite (see the top of this file).
   * `onChecking` is called each time the outcome turns out unknown. Resolves to
   * - `{ kind: 'answer', at, status, body, code }`: a definite answer from gateway `at`, 2xx
   *   or a refusal (4xx but 429);
   * - `{ kind: 'not-applied', at, status, body, code, retryAfter }`: 503 from every gateway or
   *   429, while no try could have been applied: nothing was;
   * - `{ kind: 'lost' }`: no definite answer within the retry horizon.
   */
  async function write(path, payload, onChecking) {
    const current = {
      key: newKey(),
      startedAt: Date.now(),
      at: gateways.current, // the gateway the next try goes to
      tried: new Set(), // gateways asked since the last pause
      pauses: 0,
      unknown: false, // whether some try may have been applied
    };
    /** The first gateway after `current.at` that this attempt has not asked yet, or null. */
    function untried() {
      for (let at = gateways.next(current.at); at !== current.at; at = gateways.next(at)) {
        if (!current.tried.has(at)) return at;
      }
      return null;
    }
    for (;;) {
      const at = current.at;
      let response = null;
      let answer = null;
      try {
        const init = {
          method: 'POST',
          headers: { 'idempotency-key': current.key },
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        };
        if (payload !== undefined) {
          init.headers['content-type'] = 'application/json';
          init.body = JSON.stringify(payload);
        }
        response = await fetch(gateways.url(at, path), init);
        answer = await readJson(response).catch(() => null);
      } catch (_) {
        response = null; // network error or timeout: the outcome is unknown
      }
      current.tried.add(at);
      const status = response ? response.status : 0;
      const code = answer && answer.code;
      const retryAfter = response ? Number(response.headers.get('retry-after')) || 1 : 0;
      // A success whose body was lost is known to be applied, not what it made: ask again.
      const applied = response && response.ok && answer !== null;
      if (applied || (response && status >= 400 && status < 500 && status !== 429)) {
        gateways.answered(at);
        return { kind: 'answer', at, status, body: answer, code };
      }
      if (status === 503 && !current.unknown) {
        // Nothing was applied by any try so far: another gateway may take it.
        const other = untried();
        if (other !== null) {
          current.at = other;
          continue;
        }
        gateways.answered(at);
        return { kind: 'not-applied', at, status, body: answer, code, retryAfter };
      }
      if (status === 429 && !current.unknown) {
        gateways.answered(at);
        return { kind: 'not-applied', at, status, body: answer, code, retryAfter };
      }
      // Unknown (no answer, 504, another 5xx, a 2xx without its body): keep the key and ask
      // again until the answer is definite. Once an outcome was unknown, a 503 or a 429 only
      // says that the retry was not applied, not an earlier try: keep asking then too, after
      // the Retry-After a 429 asks for.
      current.unknown = true;
      if (!response) gateways.failed(at);
      if (Date.now() - current.startedAt > RETRY_HORIZON_MS) return { kind: 'lost' };
      onChecking();
      const other = response ? null : untried();
      let wait = 0;
      if (other !== null) {
        // No answer: ask a gateway not asked yet, at once.
        current.at = other;
      } else {
        // Every gateway was asked, or this one answered "unknown": the next, after a pause.
        current.tried.clear();
        current.at = gateways.next(at);
        current.pauses += 1;
        const after = status === 429 ? 1000 * retryAfter : 0;
        wait = Math.max(after, Math.min(RETRY_FIRST_MS * 2 ** (current.pauses - 1), RETRY_MAX_MS));
      }
      if (wait > 0) await sleep(wait);
    }
  }

  /** What the page says when a write was definitely not applied (`what`: "bought", ...). */
  function notApplied(result, what) {
    if (result.status === 429) {
      return `Too many requests from your connection right now. Nothing was ${what}; please try again in ${result.retryAfter} s.`;
    }
    return `The shop is too busy to take this right now. Nothing was ${what}; please try again.`;
  }

  // ---- product ----

  function productPage(article) {
    const id = article.dataset.product;
    const name = article.dataset.name;
    const form = document.getElementById('buy-form');
    const quantity = document.getElementById('quantity');
    const button = document.getElementById('buy');
    const result = document.getElementById('result');
    const limit = document.getElementById('limit');
    /** Whether a purchase is in progress. */
    let buying = false;

    function soldOut() { return article.classList.contains('sold-out'); }
    function syncControls() {
      button.disabled = buying || soldOut();
      quantity.disabled = buying || soldOut();
      button.textContent = soldOut() ? 'Sold out' : buying ? 'Buying…' : 'Buy now';
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

    async function purchase(count) {
      const path = `/v1/products/${encodeURIComponent(id)}/purchase`;
      const outcome = await write(path, { quantity: count }, () => {
        say('checking', 'We could not confirm your order yet; checking…');
      });
      buying = false;
      if (outcome.kind === 'lost') {
        say('unknown', 'We could not learn whether your order went through. Please check your orders before you buy again.');
        syncControls();
        return;
      }
      result.dataset.gateway = gateways.list[outcome.at];
      const answer = outcome.body;
      if (outcome.kind === 'not-applied') {
        say('not-applied', notApplied(outcome, 'bought'));
      } else if (outcome.status === 200 && answer && answer.order) {
        const order = answer.order;
        stock(order.remaining, undefined, orderLogIndex(order.id));
        // The order page is private: its link carries the order's token. It is on the gateway
        // that confirmed, which has applied the order.
        const orderPath = `/orders/${order.id}?token=${encodeURIComponent(order.token || '')}`;
        say('confirmed', 'Confirmed: ', link(gateways.url(outcome.at, orderPath), `order #${order.id}`),
          ` for ${order.quantity} × ${name}.`);
      } else if (outcome.status === 409 && outcome.code === 'insufficient_stock') {
        const left = leftIn(answer.message);
        if (left === 0) {
          say('sold-out', 'Sold out: nothing was bought.');
          // The stream brings the figure with its index; show the state at once meanwhile.
          article.classList.add('sold-out');
        } else {
          const count = left === null ? 'fewer' : `only ${left}`;
          say('insufficient', `Not enough stock: ${count} left. Nothing was bought; choose fewer.`);
        }
      } else if (outcome.status === 404) {
        say('error', 'This product is no longer sold.');
      } else {
        say('error', (answer && answer.message) || `The order was refused (${outcome.status}). Nothing was bought.`);
      }
      syncControls();
    }

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (buying || soldOut()) return;
      const wanted = Number(quantity.value);
      if (!Number.isInteger(wanted) || wanted < 1) {
        say('error', 'Choose a quantity of at least 1.');
        quantity.focus();
        return;
      }
      buying = true;
      say('pending', 'Placing your order…');
      syncControls();
      purchase(wanted);
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
