/* kpistream.js - the kpistream tracker. No cookies, no storage; honours GPC and DNT.
   <script defer src="https://COLLECTOR/kpistream.js" data-site="shop.example"></script>
   kpi('add_to_cart', {item_id: 'sku-1', value: 9.5, currency: 'EUR'}); kpi('purchase', ...);
   kpi('consent', 'crm-123') sends that id (customer zone) with later events.
   <div data-kpi-impression="banner:spring-sale" data-kpi-campaign="spring">: impression + click */
(function (w, d) {
  var n = w.navigator, s = d.currentScript, api = s.getAttribute('data-api') || new URL(s.src).origin;
  var site = s.getAttribute('data-site') || location.hostname, url = api + '/v1/events';
  var queue = [], timer = 0, visitor = null, seen = 0, since = 0, page = '';
  var off = n.globalPrivacyControl === true || n.doNotTrack === '1' || w.doNotTrack === '1';
  function uid() {
    return w.crypto && crypto.randomUUID ? crypto.randomUUID()
      : Date.now().toString(36) + Math.random().toString(36).slice(2);
  }
  function post(body, tries) { // text/plain: a simple request, no CORS preflight
    fetch(url, {method: 'POST', body: body, keepalive: true, credentials: 'omit',
      headers: {'Content-Type': 'text/plain'}}).then(function (r) {
      if (r.status == 429 || r.status >= 500) retry(body, tries);
    }, function () { retry(body, tries); });
  }
  function retry(body, tries) { // the same body: the same event_ids, so no double count
    if (tries < 4) setTimeout(function () { post(body, tries + 1); }, 1000 * Math.pow(4, tries));
  }
  function flush(leaving) {
    clearTimeout(timer); timer = 0;
    if (!queue.length) return;
    var body = JSON.stringify(queue); queue = [];
    if (leaving && n.sendBeacon && n.sendBeacon(url, new Blob([body], {type: 'text/plain'}))) return;
    post(body, 0);
  }
  function track(type, props) {
    if (off) return;
    var e = {type: type, event_id: uid(), ts: Date.now(), site: site};
    for (var k in props || {}) e[k] = props[k];
    if (visitor) { e.visitor_id = visitor; e.consent = true; }
    queue.push(e);
    if (!timer) timer = setTimeout(flush, 50);
  }
  function engaged(leaving) { // visible time since the last report, as an engagement event
    var ms = seen + (since ? Date.now() - since : 0);
    seen = 0; since = d.visibilityState == 'visible' ? Date.now() : 0;
    if (ms > 0) track('engagement', {engaged_ms: ms});
    flush(leaving);
  }
  function view() {
    var here = location.pathname + location.search;
    if (here == page) return;
    if (page) engaged(false);
    page = here;
    track('page_view', {url: location.href, referrer: d.referrer || undefined});
    observe();
  }
  function item(el) {
    var v = el.getAttribute('data-kpi-impression').split(':'), c = el.getAttribute('data-kpi-campaign');
    var p = {item_kind: v[0], item_id: v.slice(1).join(':') || v[0]};
    if (c) p.campaign = c;
    return p;
  }
  var io = w.IntersectionObserver && new IntersectionObserver(function (entries) {
    entries.forEach(function (en) {
      if (en.isIntersecting) { io.unobserve(en.target); track('impression', item(en.target)); }
    });
  }, {threshold: 0.5});
  function observe() {
    if (io) d.querySelectorAll('[data-kpi-impression]').forEach(function (el) { io.observe(el); });
  }
  d.addEventListener('click', function (ev) {
    var t = ev.target, el = t.closest && t.closest('[data-kpi-impression]'), a = t.closest && t.closest('a[href]');
    if (el) track('click', item(el));
    else if (a && a.host && a.host != location.host) track('click', {item_kind: 'cta', item_id: 'outbound:' + a.hostname});
    if (a || el) flush(true);
  }, true);
  d.addEventListener('visibilitychange', function () {
    if (d.visibilityState == 'hidden') engaged(true); else since = Date.now();
  });
  w.addEventListener('pagehide', function () { engaged(true); });
  ['pushState', 'replaceState'].forEach(function (m) {
    var orig = history[m];
    history[m] = function () { var r = orig.apply(this, arguments); view(); return r; };
  });
  w.addEventListener('popstate', view);
  var pending = w.kpi && w.kpi.q || [];
  w.kpi = function (type, props) {
    if (type == 'consent') visitor = props ? String(props) : null;
    else track(type, props);
  };
  since = d.visibilityState == 'visible' ? Date.now() : 0;
  view();
  pending.forEach(function (a) { w.kpi.apply(null, a); });
})(window, document);
