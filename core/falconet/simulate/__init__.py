"""The attack simulator and detection suites (``falconet simulate``, ``falconet test``).

- :mod:`falconet.simulate.actions`: the catalogue of real, safe attack behaviours.
- :mod:`falconet.simulate.contexts`: where they run (host, runc, docker).
- :mod:`falconet.simulate.payload`: syscall-level behaviours (standalone script).
- :mod:`falconet.simulate.suite`: the YAML suite format.
- :mod:`falconet.simulate.live`: a live ``falconet run --json`` under test.
- :mod:`falconet.simulate.runner`: runs actions and suites, matches alerts, measures latency.
"""
