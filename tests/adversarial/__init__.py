"""The permanent adversarial suite: hostile servers, files and model output.

``server.py`` is one scriptable hostile HTTP server on 127.0.0.1; each case in the
``test_*`` modules scripts what it sends and checks a bound: time (``total_timeout`` +
1 s), memory (``tracemalloc`` peak above the baseline), one-line errors, or no key in any
artifact. Every server stops by itself (a lifetime per connection) and every case is
bounded in time.
"""
