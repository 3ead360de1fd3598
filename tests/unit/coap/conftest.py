"""Hypothesis settings for the CoAP layer tests. The project has no global profile; this one is
registered but not loaded (loading would change every other package's tests too): the tests here
apply it with ``@settings(settings.get_profile("coap"))``. No deadline: CI machines are shared."""

from hypothesis import settings

settings.register_profile("coap", deadline=None, max_examples=200)
