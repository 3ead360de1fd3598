"""Firmware and software updates (LwM2M objects 5 and 9): packages, the download server,
per-device update jobs and campaigns across a fleet (docs/firmware.md).

``contracts`` holds the values and Protocols the parts agree on, so each part can be read,
tested and replaced alone: packages and download grants (``packages``, ``downloads``), the
per-device update state machine and its driver (``jobs``, ``manager``), campaigns
(``campaigns``).
"""
