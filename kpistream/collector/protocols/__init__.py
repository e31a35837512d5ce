"""The collector's three ways in, mapped onto the event contract (docs/collector.md): our
own (:mod:`.ours`), Plausible's (:mod:`.plausible`) and Snowplow's (:mod:`.snowplow`), one
module each, sharing :mod:`.common`."""

from kpistream.collector.protocols.common import (
    BadNumber,
    Candidate,
    Skip,
    drop,
    host_of,
    normalise,
    page_view,
    reject,
    utm,
)
from kpistream.collector.protocols.ours import ours, ours_query
from kpistream.collector.protocols.plausible import MAX_DOMAINS, plausible, plausible_event
from kpistream.collector.protocols.snowplow import (
    ECOMMERCE_ACTION,
    PAYLOAD_SCHEMA,
    snowplow,
    snowplow_post,
    snowplow_query,
)

__all__ = [
    "ECOMMERCE_ACTION",
    "MAX_DOMAINS",
    "PAYLOAD_SCHEMA",
    "BadNumber",
    "Candidate",
    "Skip",
    "drop",
    "host_of",
    "normalise",
    "ours",
    "ours_query",
    "page_view",
    "plausible",
    "plausible_event",
    "reject",
    "snowplow",
    "snowplow_post",
    "snowplow_query",
    "utm",
]
