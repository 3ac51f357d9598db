"""The Landlock layer's confinement, entered by every child the zygote forks (see the comment below).

Runs inside the sandbox (compiled from source by the bootstrap, standard library only); the reward
process imports it for the kernel's Landlock ABI and, in tests, the seccomp filter.
"""

from __future__ import annotations

import os
import stat
import struct

# --------------------------------------------------------------------------------------------------
# The Landlock layer: confinement without namespaces. Every child the zygote forks confines itself
# before the program's first instruction: capabilities dropped (when running as root), no new
# privileges, a Landlock domain (files, TCP, abstract UNIX sockets, signals) and a seccomp filter
# (everything Landlock does not cover). Used where bubblewrap cannot run (no unprivileged user
# namespaces, the usual case on HPC and GPU nodes); nothing here needs a privilege.
#
# Written with ctypes rather than the PyPI packages ``landlock`` / ``pyseccomp``: this file runs with
# ``python -I -S`` and the base interpreter's own site-packages, so it can import nothing outside the
# standard library, and pyseccomp also needs the libseccomp shared library, which a node without root
# may lack. The whole interface is three Landlock system calls and one prctl with a BPF program.
# --------------------------------------------------------------------------------------------------

_NR_LANDLOCK_CREATE_RULESET, _NR_LANDLOCK_ADD_RULE, _NR_LANDLOCK_RESTRICT_SELF = 444, 445, 446  # all arches
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1

# Filesystem access rights, by the ABI version that introduced them.
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1 = (
    1 << 13
) - 1  # execute, write/read file, read dir, remove dir/file, make char/dir/reg/sock/fifo/block/sym
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
_FS_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_TCP = 0b11  # bind, connect (ABI 4): handled with no rule, so neither is allowed
_SCOPE_ALL = 0b11  # abstract UNIX sockets, signals (ABI 6): only within the child's own domain

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 28, 47, 4
_SECBIT_NOROOT_LOCKED = 0x3  # SECBIT_NOROOT and its lock: execve grants root no capabilities


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is not built in or not enabled."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(_NR_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    return max(0, int(version))


def landlock_rights(abi: int) -> int:
    """Every filesystem right the kernel's ABI knows: all of them are denied unless a rule grants them."""
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


# Seccomp. A classic BPF program sees the architecture, the system call number and the six argument
# registers (not memory they point to). Offsets into ``struct seccomp_data``; an argument's low 32 bits
# are at 16 + 8 * i on the little-endian architectures supported here.
SECCOMP_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}  # AUDIT_ARCH_*
_X32_SYSCALL_BIT = 0x40000000  # x86_64's x32 ABI: same AUDIT_ARCH, other numbers; refused whole
_OFF_NR, _OFF_ARCH = 0, 4
_ALLOW, _KILL_PROCESS = 0x7FFF0000, 0x80000000
_EPERM, _ENOSYS = 0x00050000 | 1, 0x00050000 | 38  # SECCOMP_RET_ERRNO | errno
_FIRST_UNKNOWN_NR = 463  # calls added after Linux 6.12 answer ENOSYS until someone reviews them

# System call numbers (x86_64, aarch64); None where the architecture lacks the call.
_NR: dict[str, tuple[int | None, int | None]] = {
    "open": (2, None), "clone": (56, 220), "fork": (57, None), "vfork": (58, None), "kill": (62, 129),
    "socket": (41, 198), "socketpair": (53, 199), "truncate": (76, 45), "chmod": (90, None),
    "fchmod": (91, 52), "chown": (92, None), "fchown": (93, 55), "lchown": (94, None), "syslog": (103, 116),
    "ptrace": (101, 117), "rt_sigqueueinfo": (129, 138), "utime": (132, None), "mknod": (133, None),
    "setpriority": (141, 140), "sched_setparam": (142, 118), "sched_setscheduler": (144, 119),
    "vhangup": (153, 58), "pivot_root": (155, 41), "adjtimex": (159, 171), "chroot": (161, 51),
    "acct": (163, 89), "settimeofday": (164, 170), "mount": (165, 40), "umount2": (166, 39),
    "swapon": (167, 224), "swapoff": (168, 225), "reboot": (169, 142), "sethostname": (170, 161),
    "setdomainname": (171, 162), "iopl": (172, None), "ioperm": (173, None), "init_module": (175, 105),
    "delete_module": (176, 106), "quotactl": (179, 60), "setxattr": (188, 5), "lsetxattr": (189, 6),
    "fsetxattr": (190, 7), "removexattr": (197, 14), "lremovexattr": (198, 15), "fremovexattr": (199, 16),
    "tkill": (200, 130), "sched_setaffinity": (203, 122), "lookup_dcookie": (212, 18),
    "clock_settime": (227, 112), "tgkill": (234, 131), "utimes": (235, None), "mq_open": (240, 180),
    "mq_unlink": (241, 181), "mq_timedsend": (242, 182), "mq_timedreceive": (243, 183),
    "mq_notify": (244, 184), "mq_getsetattr": (245, 185), "kexec_load": (246, 104), "add_key": (248, 217),
    "request_key": (249, 218), "keyctl": (250, 219), "ioprio_set": (251, 30), "inotify_init": (253, None),
    "inotify_add_watch": (254, 27), "migrate_pages": (256, 238), "openat": (257, 56), "mknodat": (259, 33),
    "fchownat": (260, 54), "futimesat": (261, None), "fchmodat": (268, 53), "unshare": (272, 97),
    "move_pages": (279, 239), "utimensat": (280, 88), "inotify_init1": (294, 26),
    "rt_tgsigqueueinfo": (297, 240), "perf_event_open": (298, 241), "fanotify_init": (300, 262),
    "fanotify_mark": (301, 263), "prlimit64": (302, 261), "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265), "clock_adjtime": (305, 266), "setns": (308, 268),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "kcmp": (312, 272),
    "finit_module": (313, 273), "sched_setattr": (314, 274), "memfd_create": (319, 279),
    "kexec_file_load": (320, 294), "bpf": (321, 280), "userfaultfd": (323, 282),
    "shmget": (29, 194), "shmat": (30, 196), "shmctl": (31, 195), "semget": (64, 190), "semop": (65, 193),
    "semctl": (66, 191), "msgget": (68, 186), "msgsnd": (69, 189), "msgrcv": (70, 188),
    "msgctl": (71, 187), "semtimedop": (220, 192),
    # Numbers shared by every architecture from here on.
    "pidfd_send_signal": (424, 424), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433), "pidfd_open": (434, 434),
    "clone3": (435, 435), "openat2": (437, 437), "pidfd_getfd": (438, 438), "process_madvise": (440, 440),
    "mount_setattr": (442, 442), "quotactl_fd": (443, 443), "memfd_secret": (447, 447),
    "process_mrelease": (448, 448), "fchmodat2": (452, 452), "lsm_set_self_attr": (460, 460),
}  # fmt: skip

# Calls refused with EPERM, by what they would give a program.
_DENIED: dict[str, tuple[str, ...]] = {
    "new processes (threads are allowed, see clone)": ("fork", "vfork"),
    "sockets of any family: TCP, UDP, raw, netlink, and UNIX sockets by path or abstract name": ("socket",),
    "other processes: debugging, memory, handles, scheduling": (
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "process_madvise", "process_mrelease",
        "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "tkill", "setpriority", "ioprio_set",
        "migrate_pages", "move_pages",
    ),
    "kernel interfaces with a history of exploits; io_uring would also open sockets behind this filter": (
        "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
        "io_uring_setup", "io_uring_enter", "io_uring_register", "lsm_set_self_attr",
    ),
    "mounts and namespaces": (
        "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree", "move_mount",
        "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    ),
    "the machine: modules, reboot, swap, clocks, names, I/O ports, accounting, kernel log": (
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
        "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
        "sethostname", "setdomainname", "iopl", "ioperm", "vhangup", "acct", "quotactl", "quotactl_fd",
        "syslog", "lookup_dcookie",
    ),
    "file metadata Landlock does not govern (modes, owners, extended attributes, times), truncation "
    "by path, device nodes, file handles and watches on files outside the sandbox": (
        "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
        "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
        "utime", "utimes", "futimesat", "utimensat", "truncate", "mknod", "mknodat",
        "name_to_handle_at", "open_by_handle_at", "fanotify_init", "fanotify_mark",
        "inotify_init", "inotify_init1", "inotify_add_watch",
    ),
    "IPC objects shared with the whole host (SysV, POSIX message queues) and memory files, which "
    "escape the file-size and scratch-space limits": (
        "shmget", "shmat", "shmctl", "semget", "semop", "semctl", "semtimedop", "msgget", "msgsnd",
        "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
        "mq_getsetattr", "memfd_create", "memfd_secret",
    ),
}  # fmt: skip
# Their arguments live in memory a filter cannot read; ENOSYS makes libc fall back to the older call.
_NOT_IMPLEMENTED = ("clone3", "openat2")
# Calls whose first argument is a process: allowed for the caller itself only (0, its pid, its group).
_SELF_ONLY = (
    "kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sched_setaffinity", "sched_setparam",
    "sched_setscheduler", "sched_setattr", "prlimit64",
)  # fmt: skip
_CLONE_THREAD = 0x00010000
_CLONE_NEW_NAMESPACES = 0x00020000 | 0x00000080 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000  # fmt: skip
_AF_UNIX, _SOCK_STREAM, _SOCK_TYPE_MASK = 1, 1, 0xF
_O_ACCMODE, _O_TRUNC = 0o3, 0o1000


class _Bpf:
    """A classic-BPF assembler with named forward jumps: enough to write a seccomp filter legibly."""

    _LOAD, _JEQ, _JGE, _JSET, _JA, _AND, _RET = 0x20, 0x15, 0x35, 0x45, 0x05, 0x54, 0x06

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def load(self, offset: int) -> None:
        """A = the 32-bit word of seccomp_data at ``offset``."""
        self.code.append((self._LOAD, None, None, offset))

    def load_arg(self, index: int) -> None:
        """A = the low 32 bits of argument ``index`` (int arguments: the upper half is undefined)."""
        self.load(16 + 8 * index)

    def mask(self, k: int) -> None:
        self.code.append((self._AND, None, None, k))

    def jump_if(self, k: int, then: str | None, otherwise: str | None = None, test: str = "eq") -> None:
        """Go to label ``then`` if A == k (``test="ge"``: A >= k; ``"set"``: A & k), else ``otherwise``;
        ``None`` falls through to the next instruction."""
        op = {"eq": self._JEQ, "ge": self._JGE, "set": self._JSET}[test]
        self.code.append((op, then, otherwise, k))

    def goto(self, label: str) -> None:
        self.code.append((self._JA, None, None, label))  # type: ignore[arg-type]

    def dispatch(self, cases: list[tuple[int, str]], otherwise: str) -> None:
        """Go to the label paired with A's value in ``cases``, else to ``otherwise``: a binary search
        (a few comparisons per call instead of one per case, both when the kernel runs the filter and
        when it pre-computes which calls are always allowed)."""
        cases = sorted(cases)
        if len(cases) <= 4:
            for value, label in cases:
                self.jump_if(value, label)
            self.goto(otherwise)
            return
        middle = len(cases) // 2
        upper = f"upper-{len(self.code)}"
        self.jump_if(cases[middle][0], upper, None, test="ge")
        self.dispatch(cases[:middle], otherwise)
        self.label(upper)
        self.dispatch(cases[middle:], otherwise)

    def ret(self, action: int) -> None:
        self.code.append((self._RET, None, None, action))

    def _offset(self, label: object, index: int, limit: int) -> int:
        """Instructions to skip from ``index`` to reach ``label`` (jumps only go forward)."""
        if label is None:
            return 0
        distance = self.labels[str(label)] - index - 1
        if not 0 <= distance <= limit:
            raise ValueError(f"BPF jump to {label!r} out of range")
        return distance

    def assemble(self) -> bytes:
        out = bytearray()
        for index, (op, then, otherwise, k) in enumerate(self.code):
            if op == self._JA:
                out += struct.pack("=HBBI", op, 0, 0, self._offset(k, index, 0xFFFF))
            else:
                jt, jf = self._offset(then, index, 0xFF), self._offset(otherwise, index, 0xFF)
                out += struct.pack("=HBBI", op, jt, jf, k & 0xFFFFFFFF)
        return bytes(out)


def seccomp_filter(arch: str, pid: int) -> bytes:
    """The BPF program for a child whose pid is ``pid`` on ``arch`` (``os.uname().machine``)."""
    audit_arch = SECCOMP_ARCH[arch]
    column = 0 if arch == "x86_64" else 1

    targets = {name: "deny" for names in _DENIED.values() for name in names}
    targets.update({name: "enosys" for name in _NOT_IMPLEMENTED})
    targets.update({name: "self_only" for name in _SELF_ONLY})
    targets.update(clone="clone", socketpair="socketpair", openat="openat", open="open")
    cases = [(_NR[name][column], label) for name, label in targets.items() if _NR[name][column] is not None]

    bpf = _Bpf()
    bpf.load(_OFF_ARCH)
    bpf.jump_if(audit_arch, None, "kill")  # another ABI (i386 on x86_64): its numbers mean other calls
    bpf.load(_OFF_NR)
    if arch == "x86_64":
        bpf.jump_if(_X32_SYSCALL_BIT, "kill", None, test="ge")
    bpf.dispatch(cases, "other")  # type: ignore[arg-type]
    bpf.label("other")
    bpf.jump_if(_FIRST_UNKNOWN_NR, "enosys", None, test="ge")
    bpf.ret(_ALLOW)

    # clone: threads only (CLONE_THREAD), and no new namespaces with them.
    bpf.label("clone")
    bpf.load_arg(0)
    bpf.jump_if(_CLONE_THREAD, None, "deny", test="set")
    bpf.jump_if(_CLONE_NEW_NAMESPACES, "deny", "allow", test="set")
    # socketpair: a connected pair of UNIX stream sockets (multiprocessing.Pipe), nothing that can
    # address a socket outside.
    bpf.label("socketpair")
    bpf.load_arg(0)
    bpf.jump_if(_AF_UNIX, None, "deny")
    bpf.load_arg(1)
    bpf.mask(_SOCK_TYPE_MASK)
    bpf.jump_if(_SOCK_STREAM, "allow", "deny")
    # Signals and scheduling: the caller itself (0), its pid, or its process group (-pid after setsid).
    bpf.label("self_only")
    bpf.load_arg(0)
    bpf.jump_if(0, "allow")
    bpf.jump_if(pid, "allow")
    bpf.jump_if(-pid & 0xFFFFFFFF, "allow", "deny")
    # open with O_TRUNC but read-only truncates a file the program may only read (before Landlock ABI 3).
    if arch == "x86_64":
        bpf.label("open")
        bpf.load_arg(1)
        bpf.goto("check_trunc")
    bpf.label("openat")
    bpf.load_arg(2)
    bpf.label("check_trunc")
    bpf.jump_if(_O_TRUNC, None, "allow", test="set")
    bpf.jump_if(_O_ACCMODE, "allow", "deny", test="set")

    bpf.label("allow")
    bpf.ret(_ALLOW)
    bpf.label("deny")
    bpf.ret(_EPERM)
    bpf.label("enosys")
    bpf.ret(_ENOSYS)
    bpf.label("kill")
    bpf.ret(_KILL_PROCESS)
    return bpf.assemble()


class Confinement:
    """The Landlock ruleset of a zygote's children, built once, and the steps each child takes."""

    def __init__(self, spec: dict) -> None:
        import ctypes

        self._ctypes = ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self.arch = os.uname().machine
        if self.arch not in SECCOMP_ARCH:
            raise OSError(f"no seccomp filter is written for the {self.arch} architecture")
        kernel_abi = landlock_abi()
        if kernel_abi < 1:
            raise OSError("the kernel has no Landlock (Linux >= 5.13 with landlock in the lsm= list)")
        self.abi = max(1, min(kernel_abi, int(spec.get("abi") or kernel_abi)))
        if self._libc.prctl(21, 0, 0, 0, 0) < 0:  # PR_GET_SECCOMP: fails without CONFIG_SECCOMP
            raise OSError("the kernel has no seccomp")
        self.root = os.geteuid() == 0
        self.last_cap = 0
        if self.root:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                self.last_cap = int(f.read())
        self.ruleset = self._ruleset(spec)
        # The seccomp filter of two children differs only in their pid: build it here once, in a
        # buffer each child patches (building it takes longer than the child's whole set-up).
        first, second = seccomp_filter(self.arch, 0x10000001), seccomp_filter(self.arch, 0x10000002)
        self._pid_slots = [
            (offset, 1 if struct.unpack_from("=I", first, offset)[0] == 0x10000001 else -1)
            for offset in range(4, len(first), 8)
            if first[offset : offset + 4] != second[offset : offset + 4]
        ]
        self._filter = ctypes.create_string_buffer(first, len(first))

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self._fprog = SockFprog(len(first) // 8, ctypes.addressof(self._filter))

    def _call(self, *args: object) -> int:
        result = self._libc.syscall(*args)
        if result < 0:
            err = self._ctypes.get_errno()
            raise OSError(err, f"system call {args[0]}: {os.strerror(err)}")
        return int(result)

    def _ruleset(self, spec: dict) -> int:
        """A Landlock ruleset: read access to ``read``, everything in ``write``, read/write ``devices``."""
        rights = landlock_rights(self.abi)
        fields = [rights, _NET_TCP if self.abi >= 4 else 0, _SCOPE_ALL if self.abi >= 6 else 0]
        size = 8 if self.abi < 4 else 16 if self.abi < 6 else 24  # the struct as the kernel's ABI knows it
        attr = self._ctypes.create_string_buffer(struct.pack("=QQQ", *fields)[:size], size)
        fd = self._call(_NR_LANDLOCK_CREATE_RULESET, attr, size, 0)
        read_only = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
        rules = [(p, read_only) for p in spec.get("read", [])]
        rules += [(p, rights) for p in spec.get("write", [])]
        rules += [(p, _FS_READ_FILE | _FS_WRITE_FILE) for p in spec.get("devices", [])]
        for path, allowed in rules:
            try:
                parent = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path this host lacks
            try:
                if not stat.S_ISDIR(os.fstat(parent).st_mode):
                    allowed &= _FS_FILE_ONLY
                rule = self._ctypes.create_string_buffer(struct.pack("=Qi", allowed & rights, parent), 12)
                self._call(_NR_LANDLOCK_ADD_RULE, fd, _LANDLOCK_RULE_PATH_BENEATH, rule, 0)
            finally:
                os.close(parent)
        # Far above the descriptors a child rearranges (see _Zygote._spawn), so none overwrites it.
        high = fcntl_dup(fd, 1000)
        os.close(fd)
        return high

    def enter(self) -> None:
        """In a freshly forked child: drop privileges, then enter the Landlock domain (irreversibly)."""
        libc = self._libc
        self._drop_capabilities()
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(self._ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        self._call(_NR_LANDLOCK_RESTRICT_SELF, self.ruleset, 0)
        os.close(self.ruleset)

    def seal(self) -> None:
        """Install the seccomp filter (this child's pid patched in): the last step before the program."""
        pid = os.getpid()
        for offset, sign in self._pid_slots:
            struct.pack_into("=I", self._filter, offset, (sign * pid) & 0xFFFFFFFF)
        if self._libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self._ctypes.byref(self._fprog), 0, 0) != 0:
            raise OSError(self._ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")

    def _drop_capabilities(self) -> None:
        """No capabilities, for good: not even executing a program gives them back.

        Root keeps its uid (the Python installation may be readable by root only) but loses every
        capability; without them uid 0 is an ordinary user that happens to own root's files, and
        Landlock keeps it away from those. ``no_new_privs`` (set next) already stops execve from
        granting capabilities; where root may (``CAP_SETPCAP``), ``SECBIT_NOROOT`` and an empty
        bounding set say so twice. Any other user normally has none to drop.
        """
        ctypes, libc = self._ctypes, self._libc
        if self.root and libc.prctl(PR_SET_SECUREBITS, _SECBIT_NOROOT_LOCKED, 0, 0, 0) == 0:
            for cap in range(self.last_cap + 1):
                libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
        data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (two 32-bit halves): none
        if libc.capset(header, data) != 0:
            raise OSError(ctypes.get_errno(), "capset")


def fcntl_dup(fd: int, lowest: int) -> int:
    """A close-on-exec duplicate of ``fd`` numbered ``lowest`` or above."""
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
