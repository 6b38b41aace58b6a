"""The ground floor: settings, the error catalogue, logging, and the HTTP vocabulary
(media types, headers, the error and JSON bodies) every other layer writes.

May import: nothing of agbento.
"""
