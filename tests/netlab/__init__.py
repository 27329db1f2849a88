"""The network-namespace suite (marker `netns`, `make netlab`): hosts as namespaces."""
