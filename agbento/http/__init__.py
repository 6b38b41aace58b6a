"""The HTTP layers in front of the endpoints, outermost first: spread connections
(`balance`), answer any exception (`guard`), log and time (`request_log`), keys and rates
(`access`, `auth`, `ratelimit`), the in-flight bound (`overload`), reading bodies within
limits (`intake`); the route table they all read (`routes`).

May import: agbento.core, agbento.rows, agbento.models, agbento.monitoring, agbento.runtime.
"""
