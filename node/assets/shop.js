// flashstock storefront: live stock on the catalog, product and cart pages; buying, the cart and
// its hold, and cancelling an order.
//
// Stock follows a gateway's event stream (GET /v1/stream, server-sent events named "stock"):
// what is available and what is held in carts. Every figure carries the log index it is as
// fresh as; an older figure never overwrites a newer one. After a "lagged" event or a
// reconnection the page reloads the figures it shows.
//
// Failover: <body data-gateways> lists every gateway's public origin (gateway.public_origins).
// The page reads, streams and writes through one gateway, the one that served it first; when
// that one stops answering (a network error, or no answer within data-request-timeout-ms, which
// is gateway.page_request_timeout_ms) it moves on to another. The other gateways grant this
// page's origin CORS. With no list the page uses its own gateway only. Tokens (of a hold, of an
// order) go in the query, never in a header the CORS grant does not cover.
//
// Writes (a purchase, a hold, a payment, a release, a cancellation): one idempotency key per
// attempt, made here, kept across gateways. An unknown outcome (504 outcome_unknown, a 5xx that
// is not a definite refusal, or no answer) is resolved by sending the same attempt again with
// the same key, to the next gateway, until a definite answer comes back: a retry never applies
// twice, whichever gateway it reaches. No answer at all moves on to a gateway not yet asked at
// once; answers that say "unknown" are asked again after a growing pause. 503 (overloaded,
// unavailable, not_ready) or 429 (rate_limited: too many requests from this address) while
// nothing is unknown means nothing was applied: a 503 is tried on the gateways not yet asked
// before the page says so. The key is given up after data-retry-horizon-ms
// (limits.client_retry_horizon_ms), the longest its outcome is kept: the page then says it
// could not learn the outcome.
//
// The cart lives in this browser (localStorage): product ids and quantities only, at most
// data-cart-lines-max lines (checkout.cart_lines_max) of at most data-quantity-max items
// (limits.purchase_quantity_max); whatever else is stored there is ignored. So do the customer
// reference (it stands for the account a real shop's backend would authenticate) and the hold
// in progress, so that a reload resumes it rather than holding the cart twice.
'use strict';

(function () {
  const body = document.body;
  /** How long one request may go unanswered before its gateway is taken for gone. */
  const REQUEST_TIMEOUT_MS = Number(body.dataset.requestTimeoutMs) || 6000;
  /** How long one write attempt's key may be retried. */
  const RETRY_HORIZON_MS = Number(body.dataset.retryHorizonMs) || 3600000;
  /** Most products in the cart; most items of one product. */
  const CART_LINES_MAX = Number(body.dataset.cartLinesMax) || 20;
  const QUANTITY_MAX = Number(body.dataset.quantityMax) || 1000;

  // ---- gateways ----

  /**
   * The gateways this page may use: the one that served it, then the others in a random order,
   * so that the buyers of a gateway that dies spread over the rest. `current` is where reads,
   * streams and new writes go; it moves on when that gateway stops answering.
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

  /**
   * A JSON body, with every integer beyond 2^53 kept exactly as its digits: an order's or a
   * hold's id carries its incarnation in bits 56 to 62, which a JavaScript number would round.
   * (A browser whose reviver gets no source text keeps the number.)
   */
  async function readJson(response) {
    const text = await response.text();
    return JSON.parse(text, (_key, value, context) =>
      typeof value === 'number' && !Number.isSafeInteger(value) && context && context.source
        ? context.source : value);
  }

  /**
   * GET `path` from the current gateway: `{ status, body }`, or null when no answer came (a
   * timeout moves on to the next gateway).
   */
  async function fetchAnswer(path) {
    const at = gateways.current;
    try {
      const response = await fetch(gateways.url(at, path),
        { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      const answer = await readJson(response).catch(() => null);
      if (response.status < 500) gateways.answered(at);
      return { status: response.status, body: answer };
    } catch (_) {
      gateways.failed(at);
      return null;
    }
  }

  /** GET `path` as JSON from the current gateway; null unless it answers 200. */
  async function read(path) {
    const answer = await fetchAnswer(path);
    return answer && answer.status === 200 ? answer.body : null;
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

  /** The markup of views.rs's availability(): available, sold out, and held when some is. */
  function availability(stock, held) {
    const inStock = element('span', 'in-stock', 'In stock: ');
    inStock.append(element('span', 'num stock', String(stock)));
    const note = element('span', 'held-note', ' · ');
    note.append(element('span', 'num held', String(held)), ' held in carts');
    note.hidden = !held;
    return [inStock, element('span', 'sold-out-label', 'Sold out'), note];
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
   * spread out. A write that finds the stream's gateway gone moves the stream too.
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

  // ---- small helpers ----

  /** A new element with `className` (may be empty) and text. */
  function element(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function link(href, text) {
    const a = element('a', '', text);
    a.href = href;
    return a;
  }

  /** A price in cents as shown to shoppers, like the server's: $149.00. */
  function price(cents) {
    const whole = Math.floor(cents / 100);
    return `$${whole}.${String(cents % 100).padStart(2, '0')}`;
  }

  /** A Unix time in milliseconds as the pages show it, in UTC, and for <time datetime>. */
  function timeElement(ms) {
    const iso = new Date(ms).toISOString();
    const time = element('time', '', `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`);
    time.dateTime = `${iso.slice(0, 19)}Z`;
    return time;
  }

  /** A random UUID; crypto.randomUUID needs a secure context, getRandomValues does not. */
  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  /** The log index of the entry that placed an order: bits 16 to 55 of its id. */
  function orderLogIndex(orderId) {
    return Number((BigInt(orderId) >> 16n) & ((1n << 40n) - 1n));
  }

  // What a refusal's message says, in the state machine's words (api/src/lib.rs, Rejection).

  /** How many are left, from an insufficient_stock message ("... has 3 left, 5 requested"). */
  function leftIn(message) {
    const match = /has (\d+) left/.exec(message || '');
    return match ? Number(match[1]) : null;
  }

  /** The product a refusal names: `product "mug" ...` or `no product "mug"`. */
  function productIn(message) {
    const match = /product "([A-Za-z0-9_-]{1,64})"/.exec(message || '');
    return match ? match[1] : null;
  }

  /** The limit and what the customer has, from a limit_reached message. */
  function limitIn(message) {
    const match = /limited to (\d+) per customer; this customer has (\d+)/.exec(message || '');
    return match ? { limit: Number(match[1]), taken: Number(match[2]) } : null;
  }

  /** "Limit of 2 per customer[ for Mug]: you already have 2." */
  function limitMessage(message, name) {
    const limit = limitIn(message);
    const what = name ? ` for ${name}` : '';
    if (!limit) return `You reached the limit per customer${what}.`;
    return `Limit of ${limit.limit} per customer${what}: you already have ${limit.taken}.`;
  }

  /** The window's length from a cancel_window_passed message ("... window (1800 s)"). */
  function windowIn(message) {
    const match = /window \((\d+) s\)/.exec(message || '');
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

  // ---- what this browser keeps ----

  const CART_KEY = 'flashstock.cart';
  const CUSTOMER_KEY = 'flashstock.customer';
  const HOLD_KEY = 'flashstock.hold';
  /** Longest stored value read back: anything longer is not ours. */
  const STORED_LENGTH_MAX = 64 * 1024;
  const PRODUCT_ID = /^[A-Za-z0-9_-]{1,64}$/;
  /** A customer reference, as the API takes it: 1 to 64 printable ASCII, no spaces. */
  const CUSTOMER = /^[!-~]{1,64}$/;

  /** localStorage, which may be missing, full or forbidden: then nothing is kept. */
  const stored = {
    get(key) {
      try {
        const value = window.localStorage.getItem(key);
        return value !== null && value.length <= STORED_LENGTH_MAX ? value : null;
      } catch (_) {
        return null;
      }
    },
    set(key, value) {
      try { window.localStorage.setItem(key, value); } catch (_) { /* not kept */ }
    },
    remove(key) {
      try { window.localStorage.removeItem(key); } catch (_) { /* nothing kept */ }
    },
    /** The JSON stored under `key`, or null when there is none or it does not parse. */
    json(key) {
      try {
        return JSON.parse(stored.get(key) || 'null');
      } catch (_) {
        return null;
      }
    },
  };

  /**
   * The cart's lines, `[{ product, quantity }]`: only well-formed lines are kept (an id the API
   * takes, a whole quantity of at least 1, cut to QUANTITY_MAX), the first of a product only,
   * at most CART_LINES_MAX.
   */
  function loadCart() {
    const saved = stored.json(CART_KEY);
    const lines = saved && Array.isArray(saved.lines) ? saved.lines : [];
    const cart = [];
    const seen = new Set();
    for (const line of lines) {
      if (cart.length >= CART_LINES_MAX) break;
      if (!line || typeof line !== 'object') continue;
      const { product, quantity } = line;
      if (typeof product !== 'string' || !PRODUCT_ID.test(product) || seen.has(product)) continue;
      if (!Number.isSafeInteger(quantity) || quantity < 1) continue;
      seen.add(product);
      cart.push({ product, quantity: Math.min(quantity, QUANTITY_MAX) });
    }
    return cart;
  }

  function saveCart(lines) {
    const kept = lines.slice(0, CART_LINES_MAX)
      .map((line) => ({ product: line.product, quantity: line.quantity }));
    if (kept.length === 0) stored.remove(CART_KEY);
    else stored.set(CART_KEY, JSON.stringify({ lines: kept }));
    showCartCount();
  }

  /** The header's count of products in the cart. */
  function showCartCount() {
    const count = document.getElementById('cart-count');
    if (!count) return;
    const lines = loadCart().length;
    count.textContent = lines ? ` (${lines})` : '';
  }

  /** The customer reference kept in this browser, or '' when none (or not a valid one). */
  function loadCustomer() {
    const customer = stored.get(CUSTOMER_KEY) || '';
    return CUSTOMER.test(customer) ? customer : '';
  }

  /**
   * The customer field, if the page has one: filled from and kept in this browser. Returns
   * `value()`: the reference to send (undefined when empty), or null when what is typed is not
   * a valid reference.
   */
  function customerField() {
    const input = document.getElementById('customer');
    if (!input) return { value: () => undefined, input: null, show() {} };
    const form = document.getElementById('customer-form');
    input.value = loadCustomer();
    form.addEventListener('submit', (event) => event.preventDefault());
    function current() {
      const typed = input.value.trim();
      if (typed === '') return undefined;
      return CUSTOMER.test(typed) ? typed : null;
    }
    input.addEventListener('input', () => {
      const value = current();
      input.setAttribute('aria-invalid', value === null ? 'true' : 'false');
      if (value === undefined) stored.remove(CUSTOMER_KEY);
      else if (value !== null) stored.set(CUSTOMER_KEY, value);
    });
    window.addEventListener('storage', (event) => {
      if (event.key === CUSTOMER_KEY && document.activeElement !== input) input.value = loadCustomer();
    });
    return {
      value: current,
      input,
      /** Show the field (a product page shows it for a product with a limit). */
      show() { form.hidden = false; },
    };
  }

  const CUSTOMER_INVALID = 'A customer reference is 1 to 64 letters, digits or symbols, without spaces.';

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

  function productPage(article) {
    const id = article.dataset.product;
    const name = article.dataset.name;
    const form = document.getElementById('buy-form');
    const quantity = document.getElementById('quantity');
    const button = document.getElementById('buy');
    const add = document.getElementById('add-to-cart');
    const result = document.getElementById('result');
    const limit = document.getElementById('limit');
    const customer = customerField();
    /** Whether a purchase is in progress. */
    let buying = false;

    function soldOut() { return article.classList.contains('sold-out'); }
    function syncControls() {
      button.disabled = buying || soldOut();
      quantity.disabled = buying || soldOut();
      add.disabled = soldOut();
      button.textContent = soldOut() ? 'Sold out' : buying ? 'Buying…' : 'Buy now';
    }
    function say(state, ...parts) {
      result.dataset.state = state;
      result.replaceChildren(...parts);
    }
    function stock(value, held, index) {
      showStock(article, value, held, index);
      syncControls();
    }
    function showLimit(perCustomer) {
      if (perCustomer === undefined || !limit) return;
      limit.hidden = !perCustomer;
      document.getElementById('limit-value').textContent = perCustomer ? String(perCustomer) : '';
      if (perCustomer) customer.show();
    }
    /** The quantity asked for, or null after saying what is wrong with it. */
    function wanted() {
      const value = Number(quantity.value);
      if (!Number.isInteger(value) || value < 1 || value > QUANTITY_MAX) {
        say('error', `Choose a quantity from 1 to ${QUANTITY_MAX}.`);
        quantity.focus();
        return null;
      }
      return value;
    }

    async function purchase(count, who) {
      const payload = { quantity: count };
      if (who) payload.customer = who;
      const path = `/v1/products/${encodeURIComponent(id)}/purchase`;
      const outcome = await write(path, payload, () => {
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
      const code = outcome.code;
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
      } else if (outcome.status === 409 && code === 'insufficient_stock') {
        const left = leftIn(answer.message);
        if (left === 0) {
          say('sold-out', 'Sold out: nothing was bought.');
          // The stream brings the figure with its index; show the state at once meanwhile.
          article.classList.add('sold-out');
        } else {
          const count = left === null ? 'fewer' : `only ${left}`;
          say('insufficient', `Not enough stock: ${count} left. Nothing was bought; choose fewer.`);
        }
      } else if (code === 'limit_reached') {
        say('limit', `${limitMessage(answer.message)} Nothing was bought.`);
      } else if (code === 'customer_required') {
        customer.show();
        say('customer-required', 'This product is limited per customer: enter your customer reference below. Nothing was bought.');
        if (customer.input) customer.input.focus();
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
      const count = wanted();
      if (count === null) return;
      const who = customer.value();
      if (who === null) {
        say('error', CUSTOMER_INVALID);
        customer.input.focus();
        return;
      }
      buying = true;
      say('pending', 'Placing your order…');
      syncControls();
      purchase(count, who);
    });

    add.addEventListener('click', () => {
      const count = wanted();
      if (count === null) return;
      const lines = loadCart();
      const line = lines.find((l) => l.product === id);
      let inCart = count;
      if (line) {
        line.quantity = Math.min(QUANTITY_MAX, line.quantity + count);
        inCart = line.quantity;
      } else if (lines.length >= CART_LINES_MAX) {
        say('error', `Your cart holds at most ${CART_LINES_MAX} products: check it out, or remove one, first.`);
        return;
      } else {
        lines.push({ product: id, quantity: count });
      }
      saveCart(lines);
      say('added', `In your cart: ${inCart} × ${name}. `, link('/cart', 'View your cart'));
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

  // ---- cart ----

  /**
   * The hold kept in this browser while it runs: `{ id, token, deadline, lines }`, `deadline`
   * being this browser's time when it expires, or null when what is kept is not one.
   */
  function loadHold() {
    const hold = stored.json(HOLD_KEY);
    if (!hold || typeof hold !== 'object') return null;
    const { id, token, deadline, lines } = hold;
    const valid = typeof id === 'string' && /^\d{1,20}$/.test(id)
      && typeof token === 'string' && /^[0-9a-f]{32}$/.test(token)
      && Number.isFinite(deadline) && Array.isArray(lines) && lines.length <= CART_LINES_MAX
      && lines.every((line) => line && typeof line.product === 'string'
        && PRODUCT_ID.test(line.product) && Number.isSafeInteger(line.quantity)
        && Number.isSafeInteger(line.price_cents));
    return valid ? { id, token, deadline, lines } : null;
  }

  function cartPage(section) {
    const rows = document.getElementById('cart-rows');
    const table = document.getElementById('cart-lines');
    const empty = document.getElementById('cart-empty');
    const total = document.getElementById('cart-total');
    const checkout = document.getElementById('checkout');
    const holdSection = document.getElementById('hold');
    const holdTimer = document.getElementById('hold-timer');
    const countdown = document.getElementById('countdown');
    const holdLines = document.getElementById('hold-lines');
    const holdTotal = document.getElementById('hold-total');
    const pay = document.getElementById('pay');
    const release = document.getElementById('release');
    const result = document.getElementById('checkout-result');
    const news = document.getElementById('cart-news');
    const customer = customerField();

    let lines = loadCart();
    /** What the API said of each product: `{ name, price_cents, ... }`, or `{ missing: true }`. */
    const products = new Map();
    /** The hold in progress, or null. */
    let hold = null;
    let timer = null;
    /** The write in progress: 'hold', 'pay', 'release', or null. */
    let busy = null;

    function say(state, ...parts) {
      result.dataset.state = state;
      result.replaceChildren(...parts);
    }
    function nameOf(id) {
      const known = products.get(id);
      return known && known.name ? known.name : id;
    }
    function rowOf(id) {
      for (const row of rows.children) if (row.dataset.product === id) return row;
      return null;
    }

    function syncControls() {
      const locked = hold !== null || busy !== null;
      checkout.disabled = locked || lines.length === 0;
      checkout.textContent = busy === 'hold' ? 'Holding…' : 'Check out';
      for (const control of rows.querySelectorAll('input, button')) control.disabled = locked;
      pay.disabled = hold === null || hold.expired || busy !== null;
      release.disabled = hold === null || hold.expired || busy !== null;
      pay.textContent = busy === 'pay' ? 'Paying…' : `Pay ${holdTotal.textContent}`.trim();
      release.textContent = busy === 'release' ? 'Cancelling…' : 'Cancel';
    }

    /** Subtotals and total from the prices known; '…' while one is not. */
    function showTotals() {
      let sum = 0;
      let known = true;
      for (const line of lines) {
        const product = products.get(line.product);
        const row = rowOf(line.product);
        const cents = product && Number.isSafeInteger(product.price_cents) ? product.price_cents : null;
        if (row) row.querySelector('.subtotal').textContent = cents === null ? '…' : price(cents * line.quantity);
        if (cents === null) known = false;
        else sum += cents * line.quantity;
      }
      total.textContent = known ? price(sum) : '…';
    }

    /** One row of the cart's table. */
    function row(line) {
      const product = products.get(line.product) || {};
      const tr = element('tr');
      tr.dataset.product = line.product;
      const name = nameOf(line.product);
      const title = element('th');
      title.scope = 'row';
      title.append(link(`/products/${encodeURIComponent(line.product)}`, name));
      if (product.missing) title.append(element('span', 'line-note', ' no longer sold'));
      const unit = element('td', 'num n', Number.isSafeInteger(product.price_cents) ? price(product.price_cents) : '…');
      const count = element('td', 'n');
      const input = element('input', 'line-quantity');
      input.type = 'number';
      input.min = '1';
      input.max = String(QUANTITY_MAX);
      input.inputMode = 'numeric';
      input.value = String(line.quantity);
      input.setAttribute('aria-label', `Quantity of ${name}`);
      input.addEventListener('change', () => {
        const value = Number(input.value);
        const kept = lines.find((l) => l.product === line.product);
        if (!kept) return;
        if (Number.isInteger(value) && value >= 1) kept.quantity = Math.min(value, QUANTITY_MAX);
        input.value = String(kept.quantity);
        saveCart(lines);
        showTotals();
      });
      count.append(input);
      const subtotal = element('td', 'num n subtotal');
      const stock = element('td', 'availability');
      if (Number.isSafeInteger(product.stock)) {
        tr.dataset.index = String(product.index || 0);
        stock.append(...availability(product.stock, product.held || 0));
        tr.classList.toggle('sold-out', product.stock === 0);
      }
      const remove = element('button', 'remove', 'Remove');
      remove.type = 'button';
      remove.setAttribute('aria-label', `Remove ${name}`);
      remove.addEventListener('click', () => {
        lines = lines.filter((l) => l.product !== line.product);
        saveCart(lines);
        render();
        news.textContent = `${name} removed from your cart.`;
      });
      const action = element('td');
      action.append(remove);
      tr.append(title, unit, count, subtotal, stock, action);
      return tr;
    }

    /** The table, from `lines` and what is known of their products. */
    function render() {
      // Rows are made anew: keep the focus on the control it was on.
      const focused = document.activeElement;
      const row0 = focused && rows.contains(focused) ? focused.closest('tr') : null;
      const refocus = row0 && { product: row0.dataset.product, className: focused.className };
      rows.replaceChildren(...lines.map(row));
      if (refocus) {
        const again = rowOf(refocus.product);
        const control = again && again.getElementsByClassName(refocus.className)[0];
        if (control) control.focus();
      }
      table.hidden = lines.length === 0;
      empty.hidden = lines.length !== 0 || hold !== null;
      showTotals();
      syncControls();
    }

    /** A stock figure from the stream or a read, for a product in the cart. */
    function stockOf(id, stock, held, index) {
      const product = products.get(id);
      if (!product || product.missing) return;
      if (index < (product.index || 0)) return;
      Object.assign(product, { stock, held: held || 0, index });
      const tr = rowOf(id);
      if (!tr) return;
      const cell = tr.querySelector('.availability');
      if (!cell.querySelector('.stock')) {
        cell.append(...availability(stock, held || 0));
        tr.dataset.index = String(index);
      }
      showStock(tr, stock, held || 0, index);
    }

    /** Read every product of the cart (at most CART_LINES_MAX): name, price, stock. */
    async function loadProducts() {
      await Promise.all(lines.map(async (line) => {
        const answer = await fetchAnswer(`/v1/products/${encodeURIComponent(line.product)}`);
        if (!answer) return; // no answer: the stream's reconnection reads again
        if (answer.status === 404) {
          products.set(line.product, { missing: true });
        } else if (answer.status === 200 && answer.body && answer.body.product) {
          const view = answer.body;
          const product = products.get(line.product) || {};
          if (product.missing) products.delete(line.product);
          const known = products.get(line.product) || {};
          Object.assign(known, {
            name: view.product.name,
            price_cents: view.product.price_cents,
            limit: view.product.limit_per_customer || null,
          });
          products.set(line.product, known);
          if (known.index === undefined || view.applied_index >= known.index) {
            Object.assign(known, {
              stock: view.product.stock, held: view.product.held || 0, index: view.applied_index,
            });
          }
        }
      }));
      render();
      if (hold) showHoldLines(hold);
      const limited = lines.map((l) => products.get(l.product)).find((p) => p && p.limit);
      if (limited && !customer.value() && !hold) {
        news.textContent = `${limited.name} is limited to ${limited.limit} per customer: enter your customer reference.`;
      }
    }

    // -- the hold --

    function holdTotalCents(held) {
      return held.lines.reduce((sum, line) => sum + line.price_cents * line.quantity, 0);
    }

    /** The hold's lines, by name once the products are read. */
    function showHoldLines(held) {
      holdLines.replaceChildren(...held.lines.map((line) =>
        element('li', '', `${line.quantity} × ${nameOf(line.product)}, ${price(line.price_cents)} each`)));
    }

    /** Show `held` (kept in this browser too) and count it down. */
    function showHold(held) {
      hold = held;
      holdSection.hidden = false;
      holdSection.dataset.state = 'held';
      holdTimer.firstChild.textContent = 'Held for you: ';
      showHoldLines(held);
      holdTotal.textContent = price(holdTotalCents(held));
      clearInterval(timer);
      tick();
      timer = setInterval(tick, 250);
      render();
    }

    /** m:ss left, rounded up: 0:00 when the hold is due. */
    function tick() {
      if (!hold) return;
      const left = Math.max(0, hold.deadline - Date.now());
      const seconds = Math.ceil(left / 1000);
      countdown.textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
      // A payment in flight is answered for certain: confirmed, or refused as expired.
      if (left === 0 && busy === null) expired('Time is up: your hold expired and the items went back on sale. Check out again to hold them anew.');
    }

    /** The hold is over; the section stays, saying `state`, with Pay and Cancel disabled. */
    function endHold(state) {
      clearInterval(timer);
      stored.remove(HOLD_KEY);
      if (hold) hold.expired = true;
      holdSection.dataset.state = state;
      hold = null;
      // Pay and Cancel are disabled or gone: keep the keyboard's focus on the page's action.
      const focused = holdSection.contains(document.activeElement);
      render();
      if (focused && !checkout.disabled) checkout.focus();
    }

    function expired(message) {
      endHold('expired');
      holdTimer.firstChild.textContent = 'Hold expired: ';
      countdown.textContent = '0:00';
      say('expired', message);
    }

    /**
     * The hold became order `orderId` (with its token) and, for a hold whose products lie in
     * several Raft groups, one order more per other group (`otherIds`): the cart loses what was
     * bought.
     */
    function confirmed(held, orderId, token, at, otherIds = []) {
      endHold('confirmed');
      holdSection.hidden = true;
      const bought = new Map(held.lines.map((line) => [line.product, line.quantity]));
      lines = loadCart().map((line) => ({
        product: line.product, quantity: line.quantity - (bought.get(line.product) || 0),
      })).filter((line) => line.quantity > 0);
      saveCart(lines);
      render();
      const items = held.lines.reduce((sum, line) => sum + line.quantity, 0);
      const orderLink = (id) => link(
        gateways.url(at, `/orders/${id}?token=${encodeURIComponent(token)}`), `order #${id}`);
      const links = [orderId, ...otherIds].map(orderLink);
      const named = links.flatMap((a, i) => (i === 0 ? [a] : [i === links.length - 1 ? ' and ' : ', ', a]));
      say('confirmed', 'Paid: ', ...named,
        ` for ${items} ${items === 1 ? 'item' : 'items'}, ${price(holdTotalCents(held))}.`);
      links[0].focus();
    }

    /** Ask the cluster how `held` stands (after `hold_finished`, or on a reload). */
    async function refresh(held) {
      const path = `/v1/holds/${held.id}?token=${encodeURIComponent(held.token)}`;
      const answer = await fetchAnswer(path);
      if (!answer) return false;
      if (answer.status === 404) {
        if (hold === held) endHold('unknown');
        holdSection.hidden = true;
        stored.remove(HOLD_KEY);
        return true;
      }
      if (answer.status !== 200 || !answer.body || !answer.body.hold) return false;
      const status = answer.body.hold.status;
      if (status === 'held') return true;
      if (status === 'confirmed') {
        confirmed(held, answer.body.hold.order, held.token, gateways.current,
          answer.body.hold.other_orders || []);
      } else if (status === 'released') {
        endHold('released');
        holdSection.hidden = true;
        say('released', 'Your hold was cancelled: the items are back on sale.');
      } else if (status === 'expired') {
        expired('Your hold expired and the items went back on sale. Check out again to hold them anew.');
      }
      return true;
    }

    /** Why the hold was refused, naming the line it is about. */
    function refused(outcome) {
      const answer = outcome.body || {};
      const id = productIn(answer.message);
      const name = id ? nameOf(id) : 'A product';
      for (const tr of rows.children) delete tr.dataset.problem;
      const tr = id && rowOf(id);
      if (tr) tr.dataset.problem = outcome.code;
      if (outcome.code === 'insufficient_stock') {
        const left = leftIn(answer.message);
        if (left === 0) {
          say('insufficient', `${name} is sold out. Nothing was held; remove it from your cart to check out the rest.`);
        } else {
          const count = left === null ? 'fewer' : `only ${left}`;
          say('insufficient', `Not enough stock of ${name}: ${count} left. Nothing was held; lower the quantity.`);
        }
      } else if (outcome.code === 'unknown_product') {
        say('error', `${name} is no longer sold. Nothing was held; remove it from your cart.`);
      } else if (outcome.code === 'limit_reached') {
        say('limit', `${limitMessage(answer.message, name)} Nothing was held; lower the quantity.`);
      } else if (outcome.code === 'customer_required') {
        say('customer-required', `${name} is limited per customer: enter your customer reference. Nothing was held.`);
        if (customer.input) customer.input.focus();
      } else {
        say('error', answer.message || `Your items could not be held (${outcome.status}). Nothing was held.`);
      }
    }

    checkout.addEventListener('click', async () => {
      if (busy !== null || hold !== null || lines.length === 0) return;
      const who = customer.value();
      if (who === null) {
        say('error', CUSTOMER_INVALID);
        customer.input.focus();
        return;
      }
      const payload = { lines: lines.map((l) => ({ product: l.product, quantity: l.quantity })) };
      if (who) payload.customer = who;
      busy = 'hold';
      say('pending', 'Setting your items aside…');
      syncControls();
      const outcome = await write('/v1/holds', payload, () => {
        say('checking', 'We could not confirm your hold yet; checking…');
      });
      busy = null;
      if (outcome.kind === 'lost') {
        say('unknown', 'We could not learn whether your items were set aside. If they were, they go back on sale on their own when the hold runs out.');
      } else if (outcome.kind === 'not-applied') {
        say('not-applied', notApplied(outcome, 'held'));
      } else if (outcome.status === 201 && outcome.body && outcome.body.hold && outcome.body.token) {
        const answer = outcome.body;
        // The browser's clock may differ from the log's: count the time-to-live down from now.
        const ttl = Math.max(0, answer.hold.expires_at_ms - answer.hold.held_at_ms);
        const held = {
          id: String(answer.hold.id),
          token: answer.token,
          deadline: Date.now() + ttl,
          lines: answer.hold.lines.map((line) => ({
            product: line.product, quantity: line.quantity, price_cents: line.price_cents,
          })),
        };
        stored.set(HOLD_KEY, JSON.stringify(held));
        for (const tr of rows.children) delete tr.dataset.problem;
        say('held', 'Your items are set aside for you. Pay before the time runs out.');
        showHold(held);
        pay.focus();
        return;
      } else {
        refused(outcome);
      }
      syncControls();
    });

    pay.addEventListener('click', async () => {
      if (busy !== null || hold === null || hold.expired) return;
      const held = hold;
      busy = 'pay';
      say('pending', 'Taking your payment…');
      syncControls();
      const path = `/v1/holds/${held.id}/confirm?token=${encodeURIComponent(held.token)}`;
      const outcome = await write(path, undefined, () => {
        say('checking', 'We could not confirm your payment yet; checking…');
      });
      busy = null;
      const code = outcome.code;
      if (outcome.kind === 'lost') {
        say('unknown', 'We could not learn whether your payment went through. Reload this page to see.');
      } else if (outcome.kind === 'not-applied') {
        say('not-applied', `${notApplied(outcome, 'paid')} Your items are still held.`);
      } else if (outcome.status === 201 && outcome.body && outcome.body.order) {
        const order = outcome.body.order;
        const others = (outcome.body.other_orders || []).map((other) => other.id);
        confirmed(held, order.id, order.token || held.token, outcome.at, others);
        return;
      } else if (code === 'hold_expired') {
        expired('Your hold expired before the payment: the items went back on sale, and nothing was paid. Check out again to hold them anew.');
        return;
      } else if (code === 'hold_finished' && await refresh(held)) {
        return;
      } else if (code === 'unknown_hold') {
        endHold('unknown');
        say('error', 'This hold is no longer known. Nothing was paid; check out again.');
        return;
      } else {
        say('error', (outcome.body && outcome.body.message) || `The payment was refused (${outcome.status}).`);
      }
      syncControls();
      tick();
    });

    release.addEventListener('click', async () => {
      if (busy !== null || hold === null || hold.expired) return;
      const held = hold;
      busy = 'release';
      say('pending', 'Cancelling your hold…');
      syncControls();
      const path = `/v1/holds/${held.id}/release?token=${encodeURIComponent(held.token)}`;
      const outcome = await write(path, undefined, () => {
        say('checking', 'We could not confirm the cancellation yet; checking…');
      });
      busy = null;
      const code = outcome.code;
      if (outcome.kind === 'lost') {
        say('unknown', 'We could not learn whether your hold was cancelled. It runs out on its own anyway.');
      } else if (outcome.kind === 'not-applied') {
        say('not-applied', `${notApplied(outcome, 'cancelled')} Your items are still held.`);
      } else if (outcome.status === 200) {
        endHold('released');
        holdSection.hidden = true;
        say('released', 'Your hold was cancelled: the items are back on sale. Your cart is kept.');
        return;
      } else if (code === 'hold_expired') {
        expired('Your hold had expired already: the items went back on sale.');
        return;
      } else if (code === 'hold_finished' && await refresh(held)) {
        return;
      } else {
        say('error', (outcome.body && outcome.body.message) || `The cancellation was refused (${outcome.status}).`);
      }
      syncControls();
      tick();
    });

    // Another tab changed the cart.
    window.addEventListener('storage', (event) => {
      if (event.key !== CART_KEY) return;
      lines = loadCart();
      showCartCount();
      loadProducts();
    });

    followStock('/v1/stream', (event) => {
      stockOf(event.product, event.stock, event.held, event.log_index);
    }, loadProducts);
    render();
    loadProducts();

    // A hold this browser placed before a reload: resume it, and ask how it stands.
    const kept = loadHold();
    if (kept && kept.deadline > Date.now()) {
      showHold(kept);
      refresh(kept);
    } else if (kept) {
      // Past its time here; it may have been paid before the reload.
      stored.remove(HOLD_KEY);
      refresh(kept);
    } else {
      stored.remove(HOLD_KEY);
    }
  }

  // ---- order ----

  function orderPage(section) {
    const id = section.dataset.order;
    const button = document.getElementById('cancel-order');
    const result = document.getElementById('cancel-result');
    const status = document.getElementById('order-status');
    const note = document.getElementById('order-note');
    const token = new URLSearchParams(location.search).get('token') || '';
    let busy = false;

    function say(state, ...parts) {
      result.dataset.state = state;
      result.replaceChildren(...parts);
    }
    /** The page shows the order cancelled at `ms` (unknown: undefined). */
    function cancelled(ms) {
      section.hidden = true;
      status.dataset.status = 'cancelled';
      status.replaceChildren('Cancelled', ...(ms ? [' ', timeElement(ms)] : []));
      note.className = 'cancelled-note';
      note.replaceChildren(...(ms ? ['Cancelled on ', timeElement(ms), '.'] : ['Cancelled.']),
        ' Its items are back on sale.');
    }

    button.addEventListener('click', async () => {
      if (busy) return;
      busy = true;
      button.disabled = true;
      button.textContent = 'Cancelling…';
      say('pending', 'Cancelling your order…');
      const path = `/v1/orders/${id}/cancel?token=${encodeURIComponent(token)}`;
      const outcome = await write(path, undefined, () => {
        say('checking', 'We could not confirm the cancellation yet; checking…');
      });
      busy = false;
      button.textContent = 'Cancel order';
      const code = outcome.code;
      if (outcome.kind === 'lost') {
        say('unknown', 'We could not learn whether your order was cancelled. Reload this page to see its status.');
        button.disabled = false;
      } else if (outcome.kind === 'not-applied') {
        say('not-applied', notApplied(outcome, 'cancelled'));
        button.disabled = false;
      } else if (outcome.status === 200 && outcome.body && outcome.body.order) {
        cancelled(outcome.body.order.cancelled_at_ms);
        say('cancelled', 'Your order is cancelled: its items are back on sale.');
      } else if (code === 'already_cancelled') {
        const view = await read(`/v1/orders/${id}?token=${encodeURIComponent(token)}`);
        cancelled(view && view.order ? view.order.cancelled_at_ms : undefined);
        say('error', 'This order was cancelled already; nothing more changed.');
      } else if (code === 'cancel_window_passed') {
        section.hidden = true;
        const seconds = windowIn(outcome.body.message);
        const within = seconds === null ? 'a while'
          : seconds >= 120 ? `${Math.floor(seconds / 60)} minutes` : `${seconds} seconds`;
        say('error', `Too late to cancel: an order can be cancelled within ${within} of being placed. Your order stands.`);
      } else if (code === 'unknown_order') {
        section.hidden = true;
        say('error', 'This order can no longer be cancelled here (it may have moved to the archive). Your order stands.');
      } else {
        say('error', (outcome.body && outcome.body.message) || `The cancellation was refused (${outcome.status}).`);
        button.disabled = false;
      }
    });
    button.disabled = false;
  }

  showCartCount();
  window.addEventListener('storage', (event) => { if (event.key === CART_KEY) showCartCount(); });
  const list = document.getElementById('catalog');
  if (list) catalogPage(list);
  const article = document.getElementById('product');
  if (article) productPage(article);
  const cart = document.getElementById('cart');
  if (cart) cartPage(cart);
  const cancel = document.getElementById('cancel');
  if (cancel) orderPage(cancel);
})();
