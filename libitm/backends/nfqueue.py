"""The ``nfqueue`` backend: a stock kernel, xtables NFQUEUE rules, nfnetlink_queue.

The capture is libitm's own rules (:mod:`libitm.xtables`): one chain per
application, sending its interest to the queue of its hook (the apps at a hook
share it and are told apart in user space by their interest, in priority
order). An observer's chain copies (NFLOG) instead; a process's deciders'
jumps come before its observers' at a hook, so that a packet a decider's rule
queues runs every application of the hook in priority order, observers
included, and reaches no NFLOG rule of the process. The packets travel
over a :class:`libitm.transport.QueueTransport`, whose route from queue to
applications is this backend's. With ``workers`` the rules spread over a
range of queues and worker processes drain them
(:mod:`libitm.backends.workers`).
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import select
import time
from typing import ClassVar, NoReturn

from ..dispatch import Dispatcher, Runner
from ..epoch import bump
from ..hooks import Hook
from ..info import ItmInfo
from ..owners import Owner, has_cap_net_admin, this_process
from ..transport import FULL_COPY, QueueTransport, TransportError
from ..transport.bpf_syscall import BpfError
from ..transport.btf import BtfError
from ..transport.nflog import MAX_OBSERVER_BATCH, LogTransport
from ..transport.ring import RingTransport, hook_of_tag
from ..xtables import Xtables, XtablesError, chain_name
from .base import (
    Backend,
    BackendUnavailable,
    LabelInUse,
    LoopHost,
    check_observer_copies,
    epoll_over,
    observer_queued,
    refuse_with_workers,
    watch,
)
from .workers import MAX_WORKERS, WorkerPool, end_worker, merge_reports

log = logging.getLogger("libitm")

__all__ = ["FULL_COPY", "NfqueueBackend", "choose_queues"]


def choose_queues(base: int, used: set[int], mine: set[int], span: int = 256) -> list[int]:
    """The queue numbers to try, in order: from ``base`` on (``span`` of them, at most
    65535), leaving out those a rule names (``used``) and those this process holds."""
    return [q for q in range(base, min(base + span, 65536)) if q not in used and q not in mine]


class NfqueueBackend(Backend):
    """Packets from nfnetlink_queue, rules installed with iptables/ip6tables.

    Options: ``queue_base`` (first queue number tried; the next free one is
    used), ``queue_maxlen`` (kernel queue length), ``copy_range`` (bytes copied
    to user space unless an application at the hook has ``needs_payload``),
    ``batch`` (packets handled per wakeup before the verdicts go out),
    ``rcvbuf`` (socket receive buffer), ``iptables``/``ip6tables`` (binaries),
    ``gso`` (set NFQA_CFG_F_GSO: the kernel hands over unsegmented packets whose
    checksum may be unfinished; libitm then recomputes it when it modifies one),
    ``fail_open`` (default True: a full queue accepts instead of dropping),
    ``use_recvmmsg`` (default True: read many packets per system call),
    ``workers`` (default 1: this process drains one queue per hook; N > 1: N
    forked worker processes, each with its own queue of a balanced range, see
    :mod:`libitm.backends.workers`), ``fanout`` (with workers: spread by the CPU
    that handles the packet, ``--queue-cpu-fanout``, instead of by the hash of
    its addresses), ``observers`` (default True: an application without a
    ``process_func`` gets copies through NFLOG and never delays a packet; not
    with workers), ``observer_batch`` (default 1: each copy is sent at once; N:
    the kernel sends N copies per message, at the latest 10 ms after the first,
    which costs the packets' path less; the copies still in the kernel when the
    loop closes are lost), ``observer_copies`` (``"auto"``, the default: an
    observer interested in every packet of its family(ies), without
    ``needs_payload``, gets its copies from a BPF program at the hook through a
    ring buffer where the kernel allows it (:mod:`libitm.transport.ring`), any
    other observer through NFLOG; ``"ring"``: every observer without
    ``needs_payload`` from the ring (its interest checked in user space), and
    an error where the kernel cannot; ``"nflog"``: always NFLOG).
    """

    name = "nfqueue"
    OPTIONS: ClassVar[dict[str, tuple[int, int] | None]] = {
        "queue_base": (0, 65535),
        "queue_maxlen": (1, 0xFFFFFFFF),  # a u32; 0 queues nothing
        "copy_range": (20, 0xFFFF),
        "batch": (1, 1 << 16),
        "rcvbuf": None,
        "iptables": None,
        "ip6tables": None,
        "gso": None,
        "fail_open": None,
        "use_recvmmsg": None,
        "workers": (1, MAX_WORKERS),
        "fanout": None,
        "observers": None,
        "observer_batch": (1, MAX_OBSERVER_BATCH),
        "observer_copies": None,
    }

    @classmethod
    def check_options(cls, options: dict[str, object]) -> None:
        """:meth:`Backend.check_options`, and ``observer_copies``' value (``"ring"``
        asks for what workers do not do: they queue observers too)."""
        super().check_options(options)
        check_observer_copies(options)
        workers = options.get("workers", 1)
        if options.get("observer_copies") == "ring" and isinstance(workers, int) and workers > 1:
            raise ValueError(
                "observer_copies='ring' cannot be used with workers > 1: with workers every "
                "application, observers too, is queued to the workers"
            )

    def __init__(
        self,
        *,
        queue_base: int = 4100,
        queue_maxlen: int = 4096,
        copy_range: int = 128,
        batch: int = 256,
        rcvbuf: int | None = None,
        iptables: str = "iptables",
        ip6tables: str = "ip6tables",
        gso: bool = False,
        fail_open: bool = True,
        use_recvmmsg: bool = True,
        workers: int = 1,
        fanout: bool = False,
        observers: bool = True,
        observer_batch: int = 1,
        observer_copies: str = "auto",
        **unused: object,
    ) -> None:
        """See the class docstring for the options."""
        self.check_options(
            {
                "queue_base": queue_base,
                "queue_maxlen": queue_maxlen,
                "copy_range": copy_range,
                "batch": batch,
                "workers": workers,
                "observer_batch": observer_batch,
                "observer_copies": observer_copies,
                **unused,
            }
        )
        self.queue_base = queue_base
        self.copy_range = copy_range
        self.workers = workers
        self.fanout = fanout
        #: the queue socket, whose packets this backend routes (:meth:`_route`)
        self.transport = QueueTransport(
            self._route,
            queue_maxlen=queue_maxlen,
            copy_range=copy_range,
            batch=batch,
            rcvbuf=rcvbuf,
            gso=gso,
            fail_open=fail_open,
            use_recvmmsg=use_recvmmsg,
        )
        #: applications without a process_func get copies through NFLOG (not with workers)
        self.observers = observers and workers == 1
        self._observers_asked = observers
        self.log = LogTransport(self._log_route, batch=observer_batch)
        self.observer_copies = observer_copies
        #: observers interested in whole families, fed from a BPF ring
        self.ring = RingTransport(self._ring_route, copy_range=copy_range)
        #: why the ring cannot be used here (None: not tried, or it works)
        self.ring_unusable: str | None = None
        #: id() of the applications fed from the ring, and each (family, hook)'s count
        self._ring_fed: frozenset[int] = frozenset()
        self._ring_users: dict[tuple[int, Hook], int] = {}
        self._ring_hook: dict[int, Hook] = {}
        self._groups: dict[Hook, int] = {}
        self._ghook: dict[int, Hook] = {}
        #: the queue and log sockets as one descriptor for the loop
        self._epoll: select.epoll | None = None
        #: with workers: the pool (the supervisor's, or the one this worker came from)
        self._pool: WorkerPool | None = None
        #: in a worker: its index (None: the supervisor, or no workers)
        self._worker: int | None = None
        self.xt = Xtables(iptables=iptables, ip6tables=ip6tables)
        self._queues: dict[Hook, int] = {}
        self._qhook: dict[int, Hook] = {}
        self._installed: dict[int, tuple[ItmInfo, str, tuple[int, ...]]] = {}
        #: the chains of this process's observers (fed NFLOG copies) at each hook
        self._observer_chains: dict[Hook, set[str]] = {}
        self._families: set[int] = set()  # the families libitm put rules in
        self._disp: Dispatcher | None = None
        self._host: LoopHost | None = None
        self._closed = False

    def start(self, loop: LoopHost) -> None:
        """Open the socket, bind a queue per hook, install the rules (with workers:
        choose a range of queues per hook, install the rules, fork the workers)."""
        self._disp = loop.dispatcher
        self._host = loop
        if not has_cap_net_admin():
            raise BackendUnavailable(
                "the nfqueue backend needs CAP_NET_ADMIN (root has it) for nfnetlink_queue "
                "and iptables"
            )
        self.transport.open()
        self._watch()
        atexit.register(self.close)
        try:
            for info in loop.applications:
                assert info.hook is not None
                self.install(info.hook, info)
        except BaseException:
            self.close()
            raise
        if self.workers > 1:
            # the supervisor holds the rules; each worker binds its own queues
            self.transport.close()
            self._pool = WorkerPool(self.workers, self._become_worker)
            self.supervises = True
            self._pool.start()  # a worker returns from here as that worker

    def _become_worker(self, index: int) -> None:
        """In a freshly forked worker: bind queue ``base + index`` of each hook's range."""
        self._worker = index
        self.supervises = False
        ranges = dict(self._queues)
        self._queues.clear()
        self._qhook.clear()
        self.transport.open()
        self._watch()
        for hook, base in ranges.items():
            q = base + index
            # bound and configured in one request: the rules already send packets
            err = self.transport.bind(q, self._copy_range(hook))
            if err:
                raise BackendUnavailable(f"worker {index}: binding nfqueue {q}: {os.strerror(err)}")
            self._queues[hook] = q
            self._qhook[q] = hook
            self._update_copy(hook)

    def install(self, where: Hook, info: ItmInfo) -> None:
        """Bind the hook's queue if needed, then create the app's chain.

        A chain of the same label whose owner is dead (or not recorded) is
        removed first; one whose owner lives raises :class:`LabelInUse`.
        """
        if self.workers > 1 and (self._pool is not None or self._worker is not None):
            raise BackendUnavailable(
                "with workers, register every application before the loop starts"
            )
        chain = chain_name(info.label)
        families = info.interest.families()
        self._claim_label(chain, info.label, families)
        target: list[str] | None = None
        q = 0
        # a decider's jump goes before this process's observers' at the hook: its
        # queue then runs them too, in priority order (see _route)
        before: set[str] = set()
        ring = self._feed_from_ring(info) and self._attach_ring(where, families)
        if ring:
            pass  # no rule copies or queues its packets
        elif self.observers and info.process_func is None:
            # an observer: a copy of each packet, which goes on at once
            size = FULL_COPY if info.needs_payload else self.copy_range
            target = ["NFLOG", "--nflog-group", str(self._group_for(where))]
            target += ["--nflog-size", str(size)]
        elif self.workers > 1:
            if self._observers_asked and info.process_func is None:
                observer_queued(info, self.workers)
            q = self._range_for(where)
        else:
            q = self._queue_for(where)
            self._update_copy(where)
            before = self._observer_chains.get(where, set())
        owner = this_process(info.label)
        done: list[int] = []
        try:
            for fam in families:
                self.xt.note_table(fam)
                done.append(fam)
                try:
                    self.xt.install(
                        fam,
                        chain,
                        where,
                        info.interest,
                        q,
                        owner,
                        self.workers,
                        self.fanout,
                        target,
                        before,
                        ring,
                    )
                except XtablesError:
                    holder = self._holder(fam, chain)
                    if holder is not None:
                        done.pop()  # its chain, not ours
                        raise LabelInUse(info.label, holder.pid) from None
                    raise
        except BaseException:
            for fam in done:
                self.xt.remove_chain(fam, chain, owner)
            if ring:
                self._detach_ring(where, families)
            # a table this install created (noted) goes at close, also after a failure
            self._families.update(done)
            raise
        self._families.update(families)
        self._installed[id(info)] = (info, chain, families)
        if ring:
            self._ring_fed = self._ring_fed | {id(info)}
            self._ring_hook[id(info)] = where
            bump()  # the runners leave it out of the queue's and NFLOG's
        if target is not None:
            self._observer_chains.setdefault(where, set()).add(chain)
            if where in self._queues:
                # the hook's queue runs the observers on what it queues: whole packets
                # if this one needs them
                self._update_copy(where)

    def _holder(self, family: int, chain: str) -> Owner | None:
        """The live process other than this one that owns ``chain`` (None: nobody)."""
        try:
            found = self.xt.itm_chains(family).get(chain)
        except XtablesError:
            return None
        if found is None or found.owner is None or not found.owner.alive():
            return None
        if found.owner.same_process(this_process(found.owner.label)):
            return None
        return found.owner

    def _claim_label(self, chain: str, label: str, families: tuple[int, ...]) -> None:
        """Refuse a label a live process holds; remove what a dead one left under it."""
        for fam in (4, 6):
            try:
                found = self.xt.itm_chains(fam).get(chain)
            except XtablesError:
                if fam in families:
                    raise
                continue
            if found is None:
                continue
            owner = found.owner
            if owner is not None and owner.alive():
                raise LabelInUse(label, owner.pid)
            self.xt.remove(found)
            log.warning(
                "removed the rules of %s (%s) left by %s",
                chain,
                self.xt.tool(fam),
                f"process {owner.pid}, which is gone" if owner else "an unknown owner",
            )

    def _reap(self) -> None:
        """Remove the rules of dead owners (both families) before binding a queue."""
        for fam in (4, 6):
            try:
                for ch in self.xt.reap(fam):
                    assert ch.owner is not None
                    log.warning(
                        "removed %s (%s) of process %s, which is gone",
                        ch.name,
                        self.xt.tool(fam),
                        ch.owner.pid,
                    )
            except XtablesError as e:
                log.debug("no dead owners removed for IPv%d: %s", fam, e)

    def _queues_in_use(self) -> set[int]:
        """The queue numbers any rule of this namespace names."""
        used: set[int] = set()
        for fam in (4, 6):
            try:
                used |= self.xt.queues_in_use(fam)
            except XtablesError:
                continue
        return used

    def change_enabled(self, info: ItmInfo, enabled: bool) -> None:
        """The rules do not depend on it (the dispatcher skips a disabled
        application from the next packet); with workers, once forked, refused:
        each worker would switch only its own copy
        (:func:`.base.refuse_with_workers`)."""
        if self._pool is not None or self._worker is not None:
            refuse_with_workers(info, field="enabled flag")

    def change_priority(self, info: ItmInfo, priority: int) -> None:
        """The rules do not depend on priorities: a packet a decider's rule queues
        runs every application of the hook (observers included), one that only
        observers' rules copy runs them, each in the dispatcher's order, which
        takes the new one from the next packet. With workers, once forked, refused
        (:func:`.base.refuse_with_workers`)."""
        if self._pool is not None or self._worker is not None:
            refuse_with_workers(info)

    def uninstall(self, info: ItmInfo) -> None:
        """Remove the app's chain (its queue stays bound for the loop's lifetime)."""
        entry = self._installed.pop(id(info), None)
        if entry is None:
            return
        info, chain, families = entry
        for chains in self._observer_chains.values():
            chains.discard(chain)
        ring_hook = self._ring_hook.pop(id(info), None)
        if ring_hook is not None:
            self._ring_fed = self._ring_fed - {id(info)}
            self._detach_ring(ring_hook, families)
        bump()  # the packet loop may hold a runner with this application
        for fam in families:
            self.xt.remove_chain(fam, chain, this_process(info.label))

    def close(self) -> None:
        """Remove every rule, hand back the packets still queued, unbind, close."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._worker is not None:
            self._close_worker()
        errors: list[str] = []
        self.ring.close()  # no copy is made from here on
        for info, chain, families in list(self._installed.values()):
            for fam in families:
                try:
                    self.xt.remove_chain(fam, chain, this_process(info.label))
                except Exception as e:
                    errors.append(f"{chain}: {e}")
            self._installed.pop(id(info), None)
        try:
            self.transport.close()
        except Exception as e:
            errors.append(f"draining the queue: {e}")
        self.log.close()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._pool is not None:  # the rules are gone: the workers drain and end
            apps = self._host.applications if self._host is not None else []
            merge_reports(apps, self.transport, self._pool.stop())
        for fam in sorted(self._families):
            try:
                self.xt.drop_table_if_ours(fam)
            except Exception as e:
                errors.append(f"the IPv{fam} mangle table: {e}")
        if errors:
            raise XtablesError("cleanup failed: " + "; ".join(errors))

    def _close_worker(self) -> NoReturn:
        """A worker ends: its queue handed back and closed, its counts reported to
        the supervisor (which owns the rules), then the process exits."""
        apps = self._host.applications if self._host is not None else []
        end_worker(self._pool, self._worker, self.transport, apps, self.counters, self.aborted)

    def now(self) -> float:
        """Monotonic time."""
        return time.monotonic()

    def fileno(self) -> int:
        """The queue socket (the supervisor of workers: readable when one ended)."""
        if self.supervises and self._pool is not None:
            return self._pool.fileno()
        if self._epoll is not None:
            return self._epoll.fileno()
        if not self.transport.is_open:
            raise BackendUnavailable("the nfqueue backend is not started")
        return self.transport.fileno()

    def process(self) -> int:
        """Handle the packets waiting (the supervisor of workers: restart the
        workers that ended; a restarted worker returns from here as that worker)."""
        if self.supervises and self._pool is not None:
            self._pool.reap()
            return 0
        n = self.transport.process()
        if self.log.is_open:
            n += self.log.process()
        if self.ring.is_open:
            n += self.ring.process()
        return n

    def counters(self) -> dict[str, int]:
        """The transport's counters (:meth:`QueueTransport.counters`) and
        ``observer_copies``, the copies that observers got (``ring_copies`` of
        them from the BPF ring; ``ring_lost``: the copies a full ring had no room
        for, the packets having gone on)."""
        c = self.transport.counters()
        c["observer_copies"] = self.log.c["copies"] + self.ring.c["copies"]
        c["ring_copies"] = self.ring.c["copies"]
        c["ring_lost"] = self.ring.lost
        return c

    @property
    def queues(self) -> dict[Hook, int]:
        """The queue number bound for each hook (with workers: the first of its range)."""
        return dict(self._queues)

    # ------------------------------------------------------------- queues
    def _queue_for(self, where: Hook) -> int:
        """The hook's queue, bound now if needed: the first number from
        ``queue_base`` that no rule names and no other socket holds.

        The rules of dead owners go first, so that no packet of theirs reaches
        this process. nfnetlink_queue answers EPERM both when a queue is bound
        by another socket and when the caller lacks CAP_NET_ADMIN: with the
        capability (checked at start) EPERM means taken.
        """
        q = self._queues.get(where)
        if q is not None:
            return q
        self._reap()
        used = self._queues_in_use()
        last = 0
        for q in choose_queues(self.queue_base, used, set(self._qhook)):
            err = self.transport.bind(q)
            if err == 0 and q in self._queues_in_use():
                # a rule for it appeared meanwhile (a process that bound it and died)
                self.transport.unbind(q)
                continue
            if err == 0:
                self._queues[where] = q
                self._qhook[q] = where
                return q
            last = err
            if err == errno.EPERM and not has_cap_net_admin():
                raise BackendUnavailable("binding an nfqueue needs CAP_NET_ADMIN (root has it)")
            if err not in (errno.EPERM, errno.EBUSY):
                break
        raise BackendUnavailable(
            f"could not bind an nfqueue from {self.queue_base}: "
            + (os.strerror(last) if last else "every number is in use")
        )

    def _watch(self) -> None:
        """The loop's epoll descriptor over the queue and log transports (see
        :func:`.base.epoll_over`)."""
        self._epoll = epoll_over(self._epoll, (self.transport, self.log, self.ring))

    def _group_for(self, where: Hook) -> int:
        """The hook's NFLOG group for its observers, bound now if needed: the first
        from ``queue_base`` that no other socket holds."""
        g = self._groups.get(where)
        if g is not None:
            return g
        if not self.log.is_open:
            self.log.open()
            if self._epoll is not None:
                watch(self._epoll, self.log)
        taken = set(self._ghook)
        last = 0
        for g in range(self.queue_base, min(self.queue_base + 256, 65536)):
            if g in taken:
                continue
            last = self.log.bind(g)
            if last == 0:
                self._groups[where] = g
                self._ghook[g] = where
                return g
            if last not in (errno.EBUSY, errno.EPERM):
                break
        raise BackendUnavailable(
            f"could not bind an NFLOG group from {self.queue_base}: "
            + (os.strerror(last) if last else "every number is in use")
        )

    def _range_for(self, where: Hook) -> int:
        """The first of ``workers`` consecutive queue numbers for ``where`` (the
        supervisor's): none named by a rule or bound by another socket (each is
        bound once to find out, then let go for the worker that will bind it)."""
        base = self._queues.get(where)
        if base is not None:
            return base
        n = self.workers
        self._reap()
        used = self._queues_in_use()
        for b in self._queues.values():
            used.update(range(b, b + n))
        free = set(choose_queues(self.queue_base, used, set(), span=1024))
        for first in sorted(free):
            span = range(first, first + n)
            if all(q in free for q in span) and self._all_bindable(span):
                self._queues[where] = first
                return first
        raise BackendUnavailable(
            f"could not find {n} free consecutive nfqueue numbers from {self.queue_base}"
        )

    def _all_bindable(self, queues: range) -> bool:
        """Bind every queue of ``queues`` and let it go again; False if one is taken."""
        bound: list[int] = []
        try:
            for q in queues:
                err = self.transport.bind(q)
                if err:
                    return False
                bound.append(q)
            return True
        finally:
            for q in bound:
                self.transport.unbind(q)

    def _copy_range(self, where: Hook) -> int:
        """What the hook's queue copies: whole packets if an application there needs them."""
        assert self._disp is not None
        full = any(i.needs_payload for i in self._disp.apps(where))
        return FULL_COPY if full else self.copy_range

    def _update_copy(self, where: Hook) -> None:
        q = self._queues[where]
        rng = self._copy_range(where)
        if self.transport.bound.get(q) == rng:
            return
        try:
            self.transport.configure(q, rng)
        except TransportError as e:
            raise BackendUnavailable(str(e)) from None

    # ------------------------------------------------------------ hot path
    def _route(self, q: int) -> tuple[Hook, Runner] | None:
        """Who handles queue ``q``'s packets: the hook and the runner of its
        applications (:meth:`Dispatcher.runner`; None: nobody, accept)."""
        hook = self._qhook.get(q)
        disp = self._disp
        if hook is None or disp is None:
            return None
        # a queued packet reaches no NFLOG rule of this process (its deciders'
        # jumps come first): every application of the hook runs, in priority
        # order, but those fed from the ring, which copied it before the table
        return hook, disp.runner(hook, skip=self._ring_fed)

    def _log_route(self, group: int) -> tuple[Hook, Runner] | None:
        """The hook of NFLOG ``group`` and the runner of its observers."""
        hook = self._ghook.get(group)
        disp = self._disp
        if hook is None or disp is None:
            return None
        return hook, disp.runner(hook, True, skip=self._ring_fed)

    def _ring_route(self, tag: int) -> tuple[Hook, Runner] | None:
        """The hook of a ring record's tag and the runner of its ring-fed observers."""
        where = hook_of_tag(tag)
        disp = self._disp
        if where is None or disp is None:
            return None
        return where[1], disp.runner(where[1], True, only=self._ring_fed)

    # -------------------------------------------------------- ring copies
    def _feed_from_ring(self, info: ItmInfo) -> bool:
        """True when ``info`` is to get its copies from the BPF ring (see the
        ``observer_copies`` option); "ring" raises where the kernel cannot."""
        if not self.observers or info.process_func is not None or info.needs_payload:
            return False
        if self.observer_copies == "nflog":
            return False
        if self.observer_copies == "auto" and not info.interest.whole_families():
            return False  # NFLOG's rule copies only what it wants
        if self.ring_unusable is None:
            return True
        if self.observer_copies == "ring":
            raise BackendUnavailable(f"observer_copies='ring': {self.ring_unusable}")
        return False

    def _attach_ring(self, where: Hook, families: tuple[int, ...]) -> bool:
        """Copy ``families``' packets at ``where`` into the ring (counted per user);
        False when this kernel cannot (noted: later observers get NFLOG copies)."""
        done: list[int] = []
        try:
            for fam in families:
                if self._ring_users.get((fam, where), 0) == 0:
                    opened = self.ring.is_open
                    self.ring.attach(fam, where)
                    if not opened and self._epoll is not None:
                        watch(self._epoll, self.ring)
                self._ring_users[(fam, where)] = self._ring_users.get((fam, where), 0) + 1
                done.append(fam)
        except (BpfError, BtfError) as e:
            self._detach_ring(where, tuple(done))
            self.ring_unusable = (
                "BPF ring copies are not available here (they need Linux 6.4 or later "
                "with CONFIG_NETFILTER_BPF_LINK, the kernel's BTF, and CAP_BPF, "
                f"CAP_PERFMON and CAP_NET_ADMIN, which root has): {e}"
            )
            if self.observer_copies == "ring":
                raise BackendUnavailable(f"observer_copies='ring': {self.ring_unusable}") from None
            log.info("%s; observers get NFLOG copies", self.ring_unusable)
            return False
        return True

    def _detach_ring(self, where: Hook, families: tuple[int, ...]) -> None:
        for fam in families:
            left = self._ring_users.get((fam, where), 0) - 1
            if left > 0:
                self._ring_users[(fam, where)] = left
                continue
            self._ring_users.pop((fam, where), None)
            self.ring.detach(fam, where)
