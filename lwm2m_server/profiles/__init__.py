"""Device profiles: what the server does with a device once it is connected, and what its values
are called.

A profile (a YAML/JSON file in ``profiles_dir``, or a document PUT through the API) names the
object versions it expects, maps resource paths to telemetry or attribute keys, says which paths
to observe (one Observe per path, one Observe-Composite for everything, or one per object), which
notification attributes to write, and what to do right after a device connects. The pieces, one
job each:

* ``model``: the validated profile (immutable values);
* ``loader``: documents -> ``Profile``, checked against the object models (errors name the file
  and the key);
* ``catalog``: the profiles in use, their files, and which profile a device gets;
* ``plan``: sans-IO: profile + registration + existing observations -> the requests to make;
* ``applier``: runs a plan over ``ServerOperations`` and records what failed;
* ``mapper``: telemetry points -> profile keys, telemetry or attributes (the service's
  ``TelemetryMapper``);
* ``sinks``: optional copies of mapped values (JSON lines file, MQTT);
* ``engine``: follows the server's events and ties the rest together.

See docs/profiles.md.
"""
