"""Helpers the tests share, one module per job; the fixtures that use them live in conftest.

Test modules import helpers from here, never from conftest: pytest loads conftest itself, and a
conftest imported as a module as well can run twice under two names.
"""
