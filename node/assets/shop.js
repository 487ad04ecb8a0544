// flashstock storefront: live stock on the catalog and product pages, and buying.
//
// Stock follows the gateway's event stream (GET /v1/stream, server-sent events named "stock").
// Every figure carries the log index it is as fresh as; an older figure never overwrites a newer
// one. After a "lagged" event or a reconnection the page reloads the figures it shows.
//
// Buying: one idempotency key per purchase attempt, made here. An unknown outcome (504
// outcome_unknown, a 5xx that is not a definite refusal, or a network error) is resolved by
// sending the same attempt again with the same key until a definite answer comes back: a retry
// never buys twice. 503 (overloaded, unavailable) or 429 (rate_limited: too many purchases from
// this address) to a first try means nothing was bought.
'use strict';

(function () {
  // ---- stock figures ----

  /** Show `stock` in `container` (an element with a .stock figure), as fresh as `index`. */
  function showStock(container, stock, index) {
    const known = Number(container.dataset.index || 0);
    if (index < known) return false;
    container.dataset.index = String(index);
    const figure = container.querySelector('.stock');
    const before = figure.textContent;
    figure.textContent = String(stock);
    container.classList.toggle('sold-out', stock === 0);
    if (before !== figure.textContent) figure.dataset.changedAt = String(Date.now());
    return before !== figure.textContent;
  }

  /**
   * Follow the stock stream at `url`; `resync` is called when events may have been missed. The
   * gateway ends every stream after its lifetime: the browser reconnects by itself, and the
   * state is read again then. A gateway holding its most streams refuses one with 503, after
   * which the browser gives up: try again a few seconds later, spread out.
   */
  function followStock(url, onStock, resync) {
    const source = new EventSource(url);
    let broken = false;
    source.addEventListener('stock', (event) => onStock(JSON.parse(event.data)));
    source.addEventListener('lagged', resync);
    source.addEventListener('error', () => {
      broken = true;
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(() => { resync(); followStock(url, onStock, resync); }, 5000 + Math.random() * 5000);
      }
    });
    source.addEventListener('open', () => {
      if (broken) { broken = false; resync(); }
    });
    return source;
  }

  // ---- catalog ----

  function catalogPage(list) {
    const news = document.getElementById('stock-news');
    const cards = new Map();
    for (const card of list.querySelectorAll('[data-product]')) {
      card.dataset.index = list.dataset.index;
      cards.set(card.dataset.product, card);
    }
    function update(id, stock, index) {
      const card = cards.get(id);
      if (!card) return;
      const wasSoldOut = card.classList.contains('sold-out');
      showStock(card, stock, index);
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
      try {
        const response = await fetch(`/v1/products?${params}`);
        if (!response.ok) return;
        const page = await response.json();
        for (const product of page.products) update(product.id, product.stock, page.applied_index);
      } catch (_) { /* the stream's reconnection calls again */ }
    }
    followStock('/v1/stream', (event) => update(event.product, event.stock, event.log_index), reload);
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
  const REQUEST_TIMEOUT_MS = 15000;

  function productPage(article) {
    const id = article.dataset.product;
    const name = article.dataset.name;
    const form = document.getElementById('buy-form');
    const quantity = document.getElementById('quantity');
    const button = document.getElementById('buy');
    const result = document.getElementById('result');
    /** The purchase attempt in progress: { key, quantity, tries }, or null. */
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
    function stock(value, index) {
      showStock(article, value, index);
      syncControls();
    }

    async function send(current) {
      let response = null;
      let body = null;
      try {
        response = await fetch(`/v1/products/${encodeURIComponent(id)}/purchase`, {
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
      const code = body && body.code;
      if (response && response.ok && body && body.order) {
        attempt = null;
        const order = body.order;
        stock(order.remaining, orderLogIndex(order.id));
        // The order page is private: its link carries the order's token.
        const orderUrl = `/orders/${order.id}?token=${encodeURIComponent(order.token || '')}`;
        say('confirmed', 'Confirmed: ', link(orderUrl, `order #${order.id}`),
          ` for ${order.quantity} × ${name}.`);
      } else if (response && response.status === 409 && code === 'insufficient_stock') {
        attempt = null;
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
        attempt = null;
        say('error', 'This product is no longer sold.');
      } else if (response && response.status === 503 && current.tries === 0) {
        attempt = null;
        say('not-applied', 'The shop is too busy to take your order right now. Nothing was bought; please try again.');
      } else if (response && response.status === 429 && current.tries === 0) {
        attempt = null;
        const after = Number(response.headers.get('retry-after')) || 1;
        say('not-applied', `Too many orders from your connection right now. Nothing was bought; please try again in ${after} s.`);
      } else if (!response || response.status >= 500 || response.status === 429) {
        // Unknown (504, another 5xx, no answer): keep the attempt and its key, and ask again
        // until the answer is definite. Once an outcome was unknown, a 503 or a 429 only says
        // that the retry was not applied, not the first try: keep asking then too, after the
        // Retry-After a 429 asks for.
        current.tries += 1;
        say('checking', 'We could not confirm your order yet; checking…');
        const after = response && response.status === 429
          ? 1000 * (Number(response.headers.get('retry-after')) || 1) : 0;
        const wait = Math.max(after, Math.min(RETRY_FIRST_MS * 2 ** (current.tries - 1), RETRY_MAX_MS));
        setTimeout(() => send(current), wait);
      } else {
        attempt = null;
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
      attempt = { key: newKey(), quantity: wanted, tries: 0 };
      say('pending', 'Placing your order…');
      syncControls();
      send(attempt);
    });

    async function reload() {
      try {
        const response = await fetch(`/v1/products/${encodeURIComponent(id)}`);
        if (!response.ok) return;
        const view = await response.json();
        stock(view.product.stock, view.applied_index);
      } catch (_) { /* the stream's reconnection calls again */ }
    }
    followStock(`/v1/stream?product=${encodeURIComponent(id)}`,
      (event) => stock(event.stock, event.log_index), reload);
    syncControls();
  }

  const list = document.getElementById('catalog');
  if (list) catalogPage(list);
  const article = document.getElementById('product');
  if (article) productPage(article);
})();
