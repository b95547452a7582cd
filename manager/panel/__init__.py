"""The Panel: a web console under /panel/ for Spaces, Hubs, access keys and Sequences.

Server-rendered pages (Jinja2) over the same services the API uses, plus small static
scripts that keep them live and act on Hubs through the Space API with the session cookie.
"""
