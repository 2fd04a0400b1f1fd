"""File permission rules shared by the collector and the state layer, neither of which may
import the other: computed from the event's data in the decoder, from ``/proc`` at bootstrap."""

from __future__ import annotations

import stat as _stat


def writable_by(mode: int, f_uid: int, f_gid: int, uid: int, gid: int, cap_eff: int) -> bool:
    """Falco's PPM_EXE_WRITABLE: a user (``uid``/``gid``, effective capabilities ``cap_eff``)
    may write a file of ``mode``, owned by ``f_uid``/``f_gid``. The one rule for both origins of
    the file's metadata: a stat from /proc (:mod:`falconet.state.proc_bootstrap`), inode fields
    read by the kernel program (:mod:`falconet.collector.decoder`)."""
    if uid == 0 or cap_eff >> 1 & 1:        # CAP_DAC_OVERRIDE
        return True
    if f_uid == uid:
        return bool(mode & _stat.S_IWUSR)
    if f_gid == gid:
        return bool(mode & _stat.S_IWGRP)
    return bool(mode & _stat.S_IWOTH)
