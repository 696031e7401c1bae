"""`make bench`: the rendered edge against a stock TLS reverse proxy, HAProxy and the upstreams
themselves, on loopback (python -m bench --help). Results: build/bench/results.json and .png."""
