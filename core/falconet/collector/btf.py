"""A small reader for the kernel's BTF (``/sys/kernel/btf/vmlinux``): struct member offsets.

Why: bcc compiles against the installed kernel headers, which may belong to another kernel version
(here Debian 6.1 headers on a 6.18 kernel), so ``task->field`` in BPF C reads garbage. The running
kernel describes its own types in BTF; we resolve the few offsets we need at load time and pass
them to the BPF program as ``-D`` macros, where they are read with ``bpf_probe_read_kernel``.

Only what offset resolution needs is decoded: names, kinds, sizes, struct/union members, array
element types and pointer targets. Format: ``Documentation/bpf/btf.rst``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VMLINUX = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

# kinds (include/uapi/linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class BTFError(LookupError):
    """A type or member is not in the kernel's BTF (or the BTF blob is malformed)."""


@dataclass(slots=True)
class Member:
    name: str
    type_id: int
    bit_offset: int


@dataclass(slots=True)
class BTFType:
    kind: int
    name: str
    size_or_type: int            # size for INT/STRUCT/UNION/ENUM, target type id for PTR/modifiers
    members: list[Member] | None = None   # STRUCT/UNION
    elem_type: int = 0           # ARRAY
    nelems: int = 0              # ARRAY


class BTF:
    """Parsed BTF types. ``BTF.load()`` reads the running kernel's vmlinux BTF."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BTFError(f"bad BTF magic {magic:#x} (expected {BTF_MAGIC:#x})")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self.types: list[BTFType | None] = [None]      # type id 0 is void
        self.by_name: dict[tuple[int, str], int] = {}
        self._parse(data, hdr_len + type_off, hdr_len + type_off + type_len)

    @classmethod
    def load(cls, path: str = VMLINUX) -> BTF:
        try:
            with open(path, "rb") as f:
                return cls(f.read())
        except OSError as e:
            raise BTFError(f"cannot read kernel BTF {path}: {e.strerror} "
                           "(needs CONFIG_DEBUG_INFO_BTF=y)") from e

    def _str(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off:end].decode()

    def _parse(self, data: bytes, pos: int, end: int) -> None:
        unpack = struct.unpack_from
        while pos < end:
            name_off, info, size_or_type = unpack("<III", data, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = info >> 31
            t = BTFType(kind, "", size_or_type)
            if kind in (STRUCT, UNION):
                t.name = self._str(name_off)
                members = []
                for _ in range(vlen):
                    m_name, m_type, m_off = unpack("<III", data, pos)
                    pos += 12
                    members.append(Member(self._str(m_name), m_type,
                                          (m_off & 0xFFFFFF) if kflag else m_off))
                t.members = members
            elif kind == INT or kind in (VAR, DECL_TAG):
                pos += 4
            elif kind == ARRAY:
                t.elem_type, _idx, t.nelems = unpack("<III", data, pos)
                pos += 12
            elif kind in (ENUM, FUNC_PROTO):
                pos += 8 * vlen
            elif kind in (DATASEC, ENUM64):
                pos += 12 * vlen
            if kind in (STRUCT, UNION, TYPEDEF, INT) and name_off:
                t.name = t.name or self._str(name_off)
                self.by_name.setdefault((kind, t.name), len(self.types))
            self.types.append(t)

    # ------------------------------------------------------------------ queries
    def find_struct(self, name: str) -> int:
        tid = self.by_name.get((STRUCT, name)) or self.by_name.get((UNION, name))
        if tid is None:
            raise BTFError(f"struct {name} is not in the kernel BTF")
        return tid

    def resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers."""
        t = self.types[type_id]
        while t is not None and t.kind in _MODIFIERS:
            type_id = t.size_or_type
            t = self.types[type_id]
        return type_id

    def size(self, type_id: int) -> int:
        type_id = self.resolve(type_id)
        t = self.types[type_id]
        if t is None:
            return 0
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            return t.nelems * self.size(t.elem_type)
        return t.size_or_type

    def _member(self, type_id: int, name: str) -> tuple[int, int] | None:
        """(bit offset, member type id) of ``name`` in a struct/union, looking into anonymous
        members, as C does."""
        t = self.types[self.resolve(type_id)]
        if t is None or t.members is None:
            return None
        for m in t.members:
            if m.name == name:
                return m.bit_offset, m.type_id
        for m in t.members:
            if not m.name:
                hit = self._member(m.type_id, name)
                if hit is not None:
                    return m.bit_offset + hit[0], hit[1]
        return None

    def member(self, struct_name: str, path: str) -> tuple[int, int]:
        """Byte offset and type id of ``path`` (``"a.b.c"``, embedded members, no pointers) in
        ``struct struct_name``."""
        type_id = self.find_struct(struct_name)
        total = 0
        for part in path.split("."):
            hit = self._member(type_id, part)
            if hit is None:
                raise BTFError(f"struct {struct_name} has no member {path}")
            total += hit[0]
            type_id = hit[1]
        if total % 8:
            raise BTFError(f"{struct_name}.{path} is a bitfield")
        return total // 8, type_id

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of ``path`` in ``struct struct_name``."""
        return self.member(struct_name, path)[0]

    def struct_size(self, struct_name: str) -> int:
        return self.size(self.find_struct(struct_name))


#: the offsets the BPF programs use: macro name -> (struct, member path). Missing ones are left
#: undefined and the BPF code falls back (value unknown) under ``#ifdef``.
OFFSETS: dict[str, tuple[str, str]] = {
    "OFF_TASK_PID": ("task_struct", "pid"),
    "OFF_TASK_TI_STATUS": ("task_struct", "thread_info.status"),
    "OFF_TASK_TGID": ("task_struct", "tgid"),
    "OFF_TASK_REAL_PARENT": ("task_struct", "real_parent"),
    "OFF_TASK_GROUP_LEADER": ("task_struct", "group_leader"),
    "OFF_TASK_THREAD_PID": ("task_struct", "thread_pid"),
    "OFF_TASK_EXIT_CODE": ("task_struct", "exit_code"),
    "OFF_TASK_COMM": ("task_struct", "comm"),
    "OFF_TASK_LOGINUID": ("task_struct", "loginuid"),
    "OFF_TASK_SIGNAL": ("task_struct", "signal"),
    "OFF_TASK_CRED": ("task_struct", "cred"),
    "OFF_TASK_MM": ("task_struct", "mm"),
    "OFF_TASK_START_TIME": ("task_struct", "start_time"),
    "OFF_TASK_SELF_EXEC_ID": ("task_struct", "self_exec_id"),
    "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
    "OFF_SIGNAL_TTY": ("signal_struct", "tty"),
    "OFF_SIGNAL_PIDS": ("signal_struct", "pids"),
    "OFF_TTY_INDEX": ("tty_struct", "index"),
    "OFF_TTY_DRIVER": ("tty_struct", "driver"),
    "OFF_TTYDRV_MAJOR": ("tty_driver", "major"),
    "OFF_TTYDRV_MINOR_START": ("tty_driver", "minor_start"),
    "OFF_PID_LEVEL": ("pid", "level"),
    "OFF_PID_NUMBERS": ("pid", "numbers"),
    "OFF_CRED_UID": ("cred", "uid"),
    "OFF_CRED_GID": ("cred", "gid"),
    "OFF_CRED_EUID": ("cred", "euid"),
    "OFF_CRED_EGID": ("cred", "egid"),
    "OFF_CRED_CAP_INH": ("cred", "cap_inheritable"),
    "OFF_CRED_CAP_PRM": ("cred", "cap_permitted"),
    "OFF_CRED_CAP_EFF": ("cred", "cap_effective"),
    "OFF_MM_ARG_START": ("mm_struct", "arg_start"),
    "OFF_MM_ARG_END": ("mm_struct", "arg_end"),
    "OFF_MM_ENV_START": ("mm_struct", "env_start"),
    "OFF_MM_ENV_END": ("mm_struct", "env_end"),
    "OFF_MM_EXE_FILE": ("mm_struct", "exe_file"),
    "OFF_FILE_INODE": ("file", "f_inode"),
    "OFF_FILE_F_MODE": ("file", "f_mode"),
    "OFF_FILE_PRIVATE": ("file", "private_data"),
    "OFF_SOCKET_SK": ("socket", "sk"),
    "OFF_SK_RCV_SADDR": ("sock", "__sk_common.skc_rcv_saddr"),
    "OFF_SK_NUM": ("sock", "__sk_common.skc_num"),
    "OFF_SK_FAMILY": ("sock", "__sk_common.skc_family"),
    "OFF_SK_V6_RCV_SADDR": ("sock", "__sk_common.skc_v6_rcv_saddr"),
    "OFF_FILE_DENTRY": ("file", "f_path.dentry"),
    "OFF_DENTRY_NAME": ("dentry", "d_name.name"),
    "OFF_INODE_INO": ("inode", "i_ino"),
    "OFF_INODE_SB": ("inode", "i_sb"),
    "OFF_INODE_MODE": ("inode", "i_mode"),
    "OFF_INODE_UID": ("inode", "i_uid"),
    "OFF_INODE_GID": ("inode", "i_gid"),
    "OFF_SB_MAGIC": ("super_block", "s_magic"),
    "OFF_OVL_UPPERDENTRY": ("ovl_inode", "__upperdentry"),
    "OFF_OVL_VFS_INODE": ("ovl_inode", "vfs_inode"),
    # kernel paths (issue 19): the dentry/mount walk and the fd table
    "OFF_FILE_MNT": ("file", "f_path.mnt"),
    "OFF_DENTRY_PARENT": ("dentry", "d_parent"),
    "OFF_VFSMOUNT_ROOT": ("vfsmount", "mnt_root"),
    "OFF_VFSMOUNT_SB": ("vfsmount", "mnt_sb"),
    "OFF_MOUNT_MNT": ("mount", "mnt"),
    "OFF_MOUNT_PARENT": ("mount", "mnt_parent"),
    "OFF_MOUNT_MOUNTPOINT": ("mount", "mnt_mountpoint"),
    "OFF_TASK_FS": ("task_struct", "fs"),
    "OFF_FS_ROOT": ("fs_struct", "root"),
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDT_FD": ("fdtable", "fd"),
    "OFF_FDT_MAX": ("fdtable", "max_fds"),
    # io_uring requests (issue 19): struct io_kiocb and the per-opcode command structs that
    # overlay its first bytes (io_kiocb_to_cmd), as the opcode's prep left them
    "OFF_IOK_CTX": ("io_kiocb", "ctx"),
    "OFF_IOK_CQE_FD": ("io_kiocb", "cqe.fd"),
    "OFF_FILENAME_NAME": ("filename", "name"),
    "OFF_IOU_OPEN_DFD": ("io_open", "dfd"),
    "OFF_IOU_OPEN_SLOT": ("io_open", "file_slot"),
    "OFF_IOU_OPEN_FILENAME": ("io_open", "filename"),
    "OFF_IOU_OPEN_HOW": ("io_open", "how"),
    "OFF_IOU_SOCKET_DOMAIN": ("io_socket", "domain"),
    "OFF_IOU_SOCKET_TYPE": ("io_socket", "type"),
    "OFF_IOU_SOCKET_PROTOCOL": ("io_socket", "protocol"),
    "OFF_IOU_SOCKET_SLOT": ("io_socket", "file_slot"),
    "OFF_IOU_CONNECT_ADDR": ("io_connect", "addr"),
    "OFF_IOU_CONNECT_ADDR_LEN": ("io_connect", "addr_len"),
    "OFF_IOU_ACCEPT_ADDR": ("io_accept", "addr"),
    "OFF_IOU_ACCEPT_ADDR_LEN": ("io_accept", "addr_len"),
    "OFF_IOU_ACCEPT_FLAGS": ("io_accept", "flags"),
    "OFF_IOU_ACCEPT_SLOT": ("io_accept", "file_slot"),
    "OFF_IOU_CLOSE_FD": ("io_close", "fd"),
    "OFF_IOU_CLOSE_SLOT": ("io_close", "file_slot"),
    "OFF_IOU_INSTALL_FLAGS": ("io_fixed_install", "o_flags"),
    "OFF_IOU_RENAME_OLD_DFD": ("io_rename", "old_dfd"),
    "OFF_IOU_RENAME_NEW_DFD": ("io_rename", "new_dfd"),
    "OFF_IOU_RENAME_OLDPATH": ("io_rename", "oldpath"),
    "OFF_IOU_RENAME_NEWPATH": ("io_rename", "newpath"),
    "OFF_IOU_RENAME_FLAGS": ("io_rename", "flags"),
}

#: the offsets the kernel path walk needs (bpf: HAVE_KPATH)
KPATH_OFFSETS = ("OFF_FILE_MNT", "OFF_DENTRY_PARENT", "OFF_MOUNT_MNT", "OFF_MOUNT_PARENT",
                 "OFF_MOUNT_MOUNTPOINT", "OFF_VFSMOUNT_ROOT", "OFF_TASK_FS", "OFF_FS_ROOT",
                 "OFF_DENTRY_NAME")

#: the io_uring offsets the io_uring programs need all of (else io_uring is not traced)
IOURING_OFFSETS = tuple(k for k in OFFSETS if k.startswith(("OFF_IOK_", "OFF_IOU_"))) + (
    "OFF_FILENAME_NAME",)


def iouring_layout_ok(btf: BTF) -> bool:
    """IORING_OP_LINKAT is read with struct io_rename's offsets: true when struct io_link has
    the same layout (it does on 6.x kernels; checked rather than assumed)."""
    try:
        return all(btf.offset("io_link", m) == btf.offset("io_rename", m)
                   for m in ("old_dfd", "new_dfd", "oldpath", "newpath", "flags"))
    except BTFError:
        return False


def kernel_offsets(btf: BTF | None = None) -> dict[str, int]:
    """Resolve :data:`OFFSETS` (plus ``SIZE_UPID``) against the running kernel; missing members
    are omitted."""
    btf = btf or BTF.load()
    out: dict[str, int] = {}
    for macro, (st, path) in OFFSETS.items():
        try:
            out[macro] = btf.offset(st, path)
        except BTFError:
            pass
    if not iouring_layout_ok(btf):
        for k in IOURING_OFFSETS:
            out.pop(k, None)
    try:
        out["SIZE_UPID"] = btf.struct_size("upid")
    except BTFError:
        pass
    # inode times: i_ctime_sec/_nsec (6.11+), else a timespec64 (__i_ctime 6.6+, i_ctime older)
    for t in ("ctime", "mtime"):
        for sec, nsec in ((f"i_{t}_sec", f"i_{t}_nsec"), (f"__i_{t}.tv_sec", f"__i_{t}.tv_nsec"),
                          (f"i_{t}.tv_sec", f"i_{t}.tv_nsec")):
            try:
                out[f"OFF_INODE_{t.upper()}_SEC"] = btf.offset("inode", sec)
                out[f"OFF_INODE_{t.upper()}_NSEC"] = btf.offset("inode", nsec)
                break
            except BTFError:
                continue
    return out
