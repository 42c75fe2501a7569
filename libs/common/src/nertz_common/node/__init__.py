"""The kernel: components, the join, snapshots, and the two runners (JetStream and in-memory log).

- :mod:`.component`: ``Component``, ``Join``, ``Node`` (dispatch, join buffer, state);
- :mod:`.snapshot`: ``Snapshot`` and the KV store;
- :mod:`.log`: ``Record``, positions and origins, reading a JetStream slice;
- :mod:`.log_runner`: ``LogRunner`` and ``replay`` (in-process, no servers);
- :mod:`.nats_runner`: ``ComponentRunner`` and ``ProjectionRunner`` (durable consumers);
- :mod:`.bundle`: portable incident bundles.
"""
