"""A small demo shop, instrumented three ways, for ``make demo`` and the browser tests.

One app serves every variant; the host name picks the tracker: ``plausible.<anything>`` the
official Plausible tracker, ``snowplow.<anything>`` the official Snowplow browser tracker,
any other host ``kpistream.js``. The site is the host name. The official trackers are served
from ``node_modules`` of ``kpistream/collector/shop/`` (``npm ci`` there, versions pinned in its
package-lock.json); without them those variants say so on the page.

Each page calls ``shopTrack(name, props)``, which speaks the page's tracker: the mapping the
collector applies back (docs/collector.md) turns every variant into the same events.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

HERE = Path(__file__).parent / "shop"
VENDOR = {
    "plausible.js": "@plausible-analytics/tracker/plausible.js",
    "snowplow.js": "@snowplow/browser-tracker/dist/index.umd.min.js",
    "snowplow-ecommerce.js": "@snowplow/browser-plugin-snowplow-ecommerce/dist/index.umd.min.js",
}

PAGES: dict[str, tuple[str, str]] = {
    "/": (
        "Spring shop",
        '<a id="banner" href="/product/1" data-kpi-impression="banner:spring-sale" '
        "data-kpi-campaign=\"spring\" onclick=\"shopTrack('click', {kind: 'banner', "
        "id: 'spring-sale', campaign: 'spring'})\">Spring sale: 20% off</a>"
        '<p><a id="product" href="/product/1">Garden chair</a></p>'
        '<p><a id="app" href="/app">Our app</a></p>'
        '<p><a id="outbound" href="https://example.org/">Elsewhere</a></p>',
    ),
    "/product/1": (
        "Garden chair",
        "<button id=\"add\" onclick=\"shopTrack('add_to_cart', {item_id: 'chair-1', "
        "value: 49.5, currency: 'EUR'})\">Add to cart</button>"
        '<p><a id="cart" href="/cart">Cart</a></p>',
    ),
    "/cart": (
        "Cart",
        '<button id="checkout" onclick="shopTrack(\'checkout\', {value: 49.5, '
        "currency: 'EUR'})\">Checkout</button>"
        '<p><a id="pay" href="/checkout">Pay</a></p>',
    ),
    "/checkout": (
        "Checkout",
        "<button id=\"buy\" onclick=\"shopTrack('purchase', {value: 49.5, currency: 'EUR', "
        "order_id: 'o-' + Date.now()})\">Buy</button>",
    ),
    "/app": (
        "Single-page app",
        "<button id=\"tab-a\" onclick=\"history.pushState({}, '', '/app/a'); "
        'spaView()">Tab A</button>'
        "<button id=\"tab-b\" onclick=\"history.pushState({}, '', '/app/b'); "
        'spaView()">Tab B</button>',
    ),
}

_OURS = """<script>window.spaView = function () {{}};
window.shopTrack = function (name, p) {{
  if (name == 'click' || name == 'impression') return; // data-kpi-impression does it
  if (name == 'checkout') name = 'checkout_start';
  kpi(name, p);
}};</script>
<script defer src="{collector}/kpistream.js"></script>"""

_PLAUSIBLE = """<script type="module">
import {{init, track}} from '/vendor/plausible.js';
init({{domain: location.hostname, endpoint: '{collector}/api/event', logging: false}});
window.spaView = function () {{}};
window.shopTrack = function (name, p) {{
  if (name == 'purchase') track('Purchase', {{revenue: {{amount: p.value, currency: p.currency}},
    props: {{order_id: p.order_id}}}});
  else if (name == 'click') track('click', {{props: p}});
  else if (name == 'add_to_cart') track('add_to_cart', {{props: {{item_id: p.item_id}},
    revenue: {{amount: p.value, currency: p.currency}}}});
  else track(name, {{props: p}});
}};
var banner = document.getElementById('banner');
if (banner) new IntersectionObserver(function (es, o) {{
  if (es[0].isIntersecting) {{ o.disconnect();
    track('impression', {{props: {{kind: 'banner', id: 'spring-sale', campaign: 'spring'}}}}); }}
}}, {{threshold: 0.5}}).observe(banner);
</script>"""

_SNOWPLOW = """<script src="/vendor/snowplow.js"></script>
<script src="/vendor/snowplow-ecommerce.js"></script>
<script>
var sp = snowplowBrowserTracking, ec = snowplowEcommerceAccelerator;
sp.newTracker('sp', '{collector}', {{appId: location.hostname, eventMethod: 'post',
  bufferSize: 1, keepalive: true, plugins: [ec.SnowplowEcommercePlugin()]}});
sp.enableActivityTracking({{minimumVisitLength: 2, heartbeatDelay: 2}});
sp.trackPageView();
window.spaView = function () {{ sp.trackPageView(); }};
var chair = {{id: 'chair-1', name: 'Garden chair', category: 'garden', price: 49.5,
  currency: 'EUR', quantity: 1}};
window.shopTrack = function (name, p) {{
  // The official e-commerce plugin, as a shop would use it.
  if (name == 'click') ec.trackPromotionClick({{id: p.id, name: p.campaign}});
  else if (name == 'add_to_cart') ec.trackAddToCart({{products: [chair],
    total_value: p.value, currency: p.currency}});
  else if (name == 'checkout') ec.trackCheckoutStep({{step: 1}});
  else if (name == 'purchase') ec.trackTransaction({{transaction_id: p.order_id,
    revenue: p.value, currency: p.currency, payment_method: 'card', total_quantity: 1,
    products: [chair]}});
  else sp.trackStructEvent({{category: 'shop', action: name}});
}};
document.addEventListener('DOMContentLoaded', function () {{
  var banner = document.getElementById('banner');
  if (banner) new IntersectionObserver(function (es, o) {{
    if (es[0].isIntersecting) {{ o.disconnect();
      ec.trackPromotionView({{id: 'spring-sale', name: 'spring'}}); }}
  }}, {{threshold: 0.5}}).observe(banner);
}});
</script>"""


def tracker_of(host: str) -> str:
    first = host.split(".", 1)[0]
    return first if first in ("plausible", "snowplow") else "kpistream"


def page(path: str, host: str, collector: str, vendor_ok: bool) -> str:
    title, body = PAGES["/app" if path.startswith("/app") else path]
    tracker = tracker_of(host)
    snippet = {"kpistream": _OURS, "plausible": _PLAUSIBLE, "snowplow": _SNOWPLOW}[tracker]
    note = ""
    if tracker != "kpistream" and not vendor_ok:
        note = "<p><b>The official trackers are missing: `make shop-deps`.</b></p>"
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"{snippet.format(collector=collector)}</head>"
        f"<body><h1>{html.escape(title)}</h1><p>tracker: {tracker}</p>{note}{body}"
        '<p><a href="/">Home</a></p></body></html>'
    )


def vendor_installed(modules: Path) -> bool:
    """Whether ``npm ci`` put the official trackers in ``modules``."""
    return all((modules / p).is_file() for p in VENDOR.values())


def create_shop(collector: str, node_modules: Path | None = None) -> Starlette:
    """The shop, sending to the collector at ``collector`` (its public base URL)."""
    modules = node_modules or HERE / "node_modules"
    vendor_ok = vendor_installed(modules)

    async def serve(request: Request) -> Response:
        path = request.url.path
        if path not in PAGES and not path.startswith("/app"):
            return PlainTextResponse("not found", status_code=404)
        host = (request.headers.get("host") or "localhost").split(":")[0]
        return HTMLResponse(page(path, host, collector.rstrip("/"), vendor_ok))

    async def vendor(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in VENDOR or not vendor_ok:
            return PlainTextResponse(
                "not installed: npm ci in kpistream/collector/shop", status_code=404
            )
        return FileResponse(modules / VENDOR[name], media_type="text/javascript")

    return Starlette(
        routes=[
            Route("/vendor/{name}", vendor),
            Route("/{path:path}", serve),
        ]
    )
