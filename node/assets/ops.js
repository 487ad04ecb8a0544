// flashstock operations page: polls GET /v1/ops/cluster every second, redraws the members
// table, announces members going down or coming back, and draws the purchase history as inline
// SVG (no chart library). History is fetched incrementally (?since=) and kept to ten minutes;
// the charts span the history there is, one minute at least.
'use strict';

(function () {
  const POLL_MS = 1000;
  const HISTORY_SECONDS = 600;
  const SPAN_MIN_SECONDS = 60;
  const SVG = 'http://www.w3.org/2000/svg';
  const rows = document.getElementById('node-rows');
  if (!rows) return;
  const alert = document.getElementById('ops-alert');
  const samples = [];
  /** Health of each member at the last poll, to announce changes only. */
  const wasUp = new Map();
  for (const row of rows.querySelectorAll('tr[data-node]')) {
    wasUp.set(row.dataset.node, row.classList.contains('up'));
  }

  const text = (value) => (value === null || value === undefined ? '-' : String(value));
  const $ = (id) => document.getElementById(id);

  function cell(tag, value, numeric) {
    const element = document.createElement(tag);
    element.textContent = text(value);
    if (numeric) element.className = 'num n';
    return element;
  }

  function drawRows(nodes) {
    const changes = [];
    const fresh = nodes.map((node) => {
      const row = document.createElement('tr');
      row.dataset.node = String(node.id);
      row.className = node.up ? 'up' : 'down';
      const id = cell('th', node.id);
      id.scope = 'row';
      id.className = 'num';
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = node.up ? 'up' : 'down';
      const health = document.createElement('td');
      health.className = 'health';
      if (!node.up && node.error) health.title = node.error;
      health.append(badge);
      row.append(id, cell('td', node.membership), cell('td', node.state), health,
        cell('td', node.term, true), cell('td', node.last_log_index, true),
        cell('td', node.committed_index, true), cell('td', node.applied_index, true),
        cell('td', node.lag, true));
      const key = String(node.id);
      if (wasUp.has(key) && wasUp.get(key) !== node.up) {
        changes.push(`Node ${node.id} is ${node.up ? 'back up' : 'down'}.`);
      }
      wasUp.set(key, node.up);
      return row;
    });
    rows.replaceChildren(...fresh);
    if (changes.length) alert.textContent = changes.join(' ');
  }

  function drawArchive(archive) {
    const section = $('archive');
    section.hidden = !(archive && archive.enabled);
    if (section.hidden) return;
    $('archive-backlog').textContent = String(archive.backlog);
    $('archive-note').textContent = archive.last_error_kind ? `last error: ${archive.last_error_kind}` : 'archiving normally';
  }

  /** `value` on a scale whose top is `max`, as a y coordinate in a 120-high view box. */
  function y(value, max) {
    return 118 - (value / max) * 112;
  }

  /** Seconds the charts span: the history there is, within bounds. */
  function span() {
    return Math.min(HISTORY_SECONDS, Math.max(SPAN_MIN_SECONDS, samples.length));
  }

  /** A round scale top at or above `value`: 1, 2, 5, 10, 20, 50... */
  function niceMax(value) {
    let step = 1;
    while (step * 5 < value) step *= 10;
    for (const top of [step, step * 2, step * 5, step * 10]) if (top >= value) return top;
    return step * 10;
  }

  function drawPurchases(svg) {
    const width = 600 / span();
    const peak = samples.reduce((max, s) => Math.max(max, s.purchases), 0);
    const max = niceMax(Math.max(peak, 1));
    const offset = span() - samples.length;
    const bars = samples.map((sample, i) => {
      const bar = document.createElementNS(SVG, 'rect');
      const top = y(sample.purchases, max);
      bar.setAttribute('class', 'bar');
      bar.setAttribute('x', String((offset + i) * width));
      bar.setAttribute('y', String(top));
      bar.setAttribute('width', String(width));
      bar.setAttribute('height', String(118 - top));
      return bar;
    });
    svg.replaceChildren(...bars);
    const last = samples[samples.length - 1];
    $('purchases-now').textContent = last ? `${last.purchases}/s` : '-';
    $('purchases-peak').textContent = `${peak}/s`;
    $('purchases-scale').textContent = `(scale 0 to ${max}/s)`;
    svg.setAttribute('aria-label', `Purchases per second over the last ${span()} seconds; peak ${peak}/s`);
  }

  function drawLatency(svg) {
    const max = niceMax(Math.max(1, ...samples.map((s) => s.latency_p99_ms || 0)));
    const offset = span() - samples.length;
    const x = (i) => ((offset + i + 0.5) * 600) / span();
    const line = (field, className) => {
      const points = samples
        .map((s, i) => (s[field] === null || s[field] === undefined ? null : `${x(i)},${y(s[field], max)}`))
        .filter((point) => point !== null);
      const polyline = document.createElementNS(SVG, 'polyline');
      polyline.setAttribute('class', className);
      polyline.setAttribute('points', points.join(' '));
      polyline.setAttribute('vector-effect', 'non-scaling-stroke');
      return polyline;
    };
    svg.replaceChildren(line('latency_mean_ms', 'line-mean'), line('latency_p99_ms', 'line-p99'));
    const last = [...samples].reverse().find((s) => s.latency_mean_ms !== null);
    const ms = (value) => (value === null || value === undefined ? '-' : `${value.toFixed(1)} ms`);
    $('latency-mean').textContent = last ? ms(last.latency_mean_ms) : '-';
    $('latency-p99').textContent = last ? ms(last.latency_p99_ms) : '-';
    $('latency-scale').textContent = `(scale 0 to ${max} ms)`;
    svg.setAttribute('aria-label', `Purchase latency over the last ${span()} seconds; scale up to ${max} ms`);
  }

  async function poll() {
    const since = samples.length ? samples[samples.length - 1].at_ms : 0;
    try {
      const response = await fetch(`/v1/ops/cluster?since=${since}`, { signal: AbortSignal.timeout(5000) });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const view = await response.json();
      $('ops-leader').textContent = text(view.leader);
      $('ops-gateway').textContent = String(view.gateway);
      $('ops-refreshed').textContent = `probed at ${new Date(view.probed_at_ms).toLocaleTimeString()}`;
      drawRows(view.nodes);
      drawArchive(view.archive);
      samples.push(...view.history);
      samples.splice(0, Math.max(0, samples.length - HISTORY_SECONDS));
      const seconds = span();
      $('history-span').textContent = seconds < 120
        ? `The last ${seconds} seconds, one bar per second.`
        : `The last ${Math.round(seconds / 60)} minutes, one bar per second.`;
      drawPurchases($('chart-purchases'));
      drawLatency($('chart-latency'));
    } catch (error) {
      alert.textContent = `This gateway is not answering (${error.message}); retrying.`;
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();
