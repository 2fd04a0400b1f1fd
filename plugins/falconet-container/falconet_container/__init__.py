"""Falconet container enrichment: ``container.*`` and ``k8s.*`` fields for syscall events.

The container id comes synchronously from the process's cgroup (cached by cgroup id and by
process); names, images, labels and Kubernetes metadata come from the container runtimes in a
background thread (see ``docs/containers.md``).
"""

#: The plugin's version; also what it reports for Falco's ``container`` plugin requirement.
__version__ = "0.6.0"
#: Plugin name: its config section (``plugins.container``), metrics label and capture records.
PLUGIN_NAME = "container"
