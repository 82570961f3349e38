"""The base-2 softmax unit: the hardware twin of :func:`sigprop_fpga.compiler.fixed.softmax_fixed`."""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..compiler.fixed import EXP2_FRAC_BITS, EXP2_TABLE, LOG2E_Q16, P_FRAC, RECIP_BITS
from .fixed import UQ
from ..compiler.rule import E_BITS, Q_BITS, exp_clamp, mul_b_bits
from ..compiler.timing import MUL_LATENCY, max_levels, softmax_latency

__all__ = ["Softmax", "softmax_latency", "max_levels", "exp_clamp", "mul_b_bits", "Q_BITS", "E_BITS"]


class Softmax(wiring.Component):
    """Fixed-point softmax of ``n`` logits with a base-2 exponential table and one division.

    ``m = max(s)`` by a tree of registered comparisons; ``d_k = m - s_k``; ``v_k = d_k * LOG2E_Q16``; ``e_k = EXP2_TABLE[6 fraction bits of v_k]
    >> int(v_k)`` (0 from a shift of 17); ``r = floor(2^32 / sum e)`` by a restoring divider;
    ``p_k = (e_k r) >> 16`` on an internal multiplier, or on the lanes of the stage (``groups``).

    Parameters
    ----------
    n : int
        Number of logits (classes), at least 1.
    width : int
        Width of the signed logits.
    fracs : tuple of int
        Fraction bits of the logits; ``frac_sel`` picks one per run (a stage softmaxes its
        class logits and, with a head, the head logits, which differ in scale).
    groups : int, optional
        Multiplier cycles per product on the stage's lanes (``None``: an internal multiplier).
    group_shift : int
        Bits between the partial products of consecutive groups.
    ext_table : bool
        Read the exponential table from an external memory (``tab_*``) instead of logic.
    mul_latency : int
        Cycles from a product's request to ``mul_p`` (the lanes' :data:`.mac.MUL_LATENCY`).

    Members
    -------
    start : In(1)
        Pulse to start; ``s`` and ``frac_sel`` are sampled over the run and must stay stable.
    frac_sel : In(range(len(fracs)))
    s : In(ArrayLayout(signed(width), n))
    busy : Out(1)
    done : Out(1)
        High for one cycle when ``p`` is valid; ``p`` then holds until the next ``start``.
    p : Out(ArrayLayout(UQ(1, 16), n))
        Probabilities, ``P_FRAC`` fraction bits.

    mul_en, mul_a, mul_b, mul_g : Out (only with ``groups``)
        The product ``e_k q`` requested from an external multiplier (the stage's idle lanes):
        group ``mul_g`` of ``groups``.
    mul_p : In(unsigned) (only with ``groups``)
        The partial product of the group requested ``mul_latency`` cycles before; the unit adds it shifted
        left by ``mul_g * group_shift``.
    tab_en, tab_addr : Out; tab_data : In (only with ``ext_table``)
        A read of ``EXP2_TABLE[tab_addr]`` from an external memory (one cycle latency); the
        stage keeps the table in its cache block RAM, idle while the softmax runs. Without
        ``ext_table`` the table is logic.

    Latency and throughput
    ----------------------
    :func:`softmax_latency` ``(n, groups, L) = 2 groups n + max(ceil(log2 n) - 1, 0) + 25 + 2 (L - 1)``
    cycles from ``start`` to ``done``; one run at a time. Both products (``d log2 e`` with ``d`` clamped where ``e``
    becomes 0, and ``e_k q``) go to one multiplier: with ``groups`` the stage's lanes, so the
    unit maps no DSP block of its own.
    """

    def __init__(self, n: int, width: int, fracs=(16,), groups: int | None = None, group_shift: int = 0,
                 ext_table: bool = False, mul_latency: int = MUL_LATENCY):
        self._MustUse__silence = True      # no "never used" warning if an argument check fails
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"Number of logits must be an integer, not {n!r}")
        if n < 1:
            raise ValueError(f"Number of logits must be at least 1, not {n}")
        if not isinstance(width, int) or isinstance(width, bool):
            raise TypeError(f"Logit width must be an integer, not {width!r}")
        if width < 2:
            raise ValueError(f"Logit width must be at least 2, not {width}")
        fracs = tuple(fracs)
        if not fracs or any(not isinstance(f, int) or isinstance(f, bool) or f < 0 for f in fracs):
            raise ValueError(f"Fraction bits must be a non-empty tuple of non-negative integers, not {fracs!r}")
        if groups is not None and (not isinstance(groups, int) or groups < 1 or group_shift < 1):
            raise ValueError(f"Groups must be a positive integer with a positive shift, not {groups!r}")
        if not isinstance(mul_latency, int) or isinstance(mul_latency, bool) or mul_latency < 1:
            raise ValueError(f"Multiplier latency must be an integer of at least 1, not {mul_latency!r}")
        self.n, self.width, self.fracs, self.mul_latency = n, width, fracs, mul_latency
        self.groups, self.group_shift, self.ext_table = groups, group_shift, ext_table
        sig = {
            "start": In(1),
            "frac_sel": In(range(max(2, len(fracs)))),
            "s": In(data.ArrayLayout(signed(width), n)),
            "busy": Out(1),
            "done": Out(1),
            "p": Out(data.ArrayLayout(UQ(1, P_FRAC), n)),
        }
        self.mb_bits = mul_b_bits(fracs)
        if groups is not None:
            sig.update({"mul_en": Out(1), "mul_a": Out(unsigned(E_BITS)), "mul_b": Out(unsigned(self.mb_bits)),
                        "mul_g": Out(range(max(2, groups))),
                        "mul_p": In(unsigned(E_BITS + self.mb_bits + 1))})
        if ext_table:
            sig.update({"tab_en": Out(1), "tab_addr": Out(EXP2_FRAC_BITS), "tab_data": In(unsigned(E_BITS))})
        super().__init__(sig)
        self._MustUse__silence = False

    def _max_tree(self, m):
        """The max: a tree of registered pairwise comparisons over the (stable) logits, valid
        ``max_levels(n)`` cycles after they are."""
        level = [self.s[i] for i in range(self.n)]
        for lv in range(max_levels(self.n)):
            nxt = []
            for i in range(0, len(level), 2):
                r = Signal(signed(self.width), name=f"max{lv}_{i // 2}", reset_less=True)
                pair = level[i:i + 2]
                m.d.sync += r.eq(pair[0] if len(pair) == 1 else Mux(pair[1] > pair[0], pair[1], pair[0]))
                nxt.append(r)
            level = nxt
        return level[0]

    def _multiplier(self, m, ma, mb, men, g, mp):
        """``mp = ma * mb`` ``mul_latency`` cycles after the request: an internal multiplier
        behind the lanes' pipeline registers, or the stage's lanes (``groups``)."""
        if self.groups is None:
            ma_r, mb_r = ma, mb
            for _ in range(self.mul_latency - 1):   # the lanes' pipeline: registers ahead of the product
                ma_n, mb_n = Signal.like(ma, reset_less=True), Signal.like(mb, reset_less=True)
                m.d.sync += [ma_n.eq(ma_r), mb_n.eq(mb_r)]
                ma_r, mb_r = ma_n, mb_n
            m.d.sync += mp.eq(ma_r * mb_r)
        else:
            m.d.comb += [self.mul_en.eq(men), self.mul_a.eq(ma), self.mul_b.eq(mb), self.mul_g.eq(g),
                         mp.eq(self.mul_p)]

    def elaborate(self, platform):
        m = Module()
        n, w = self.n, self.width
        s = Array(self.s[k] for k in range(n))
        k = Signal(range(n + 1))
        mx = self._max_tree(m)
        d = Signal(unsigned(w + 1))
        emax = (1 << P_FRAC)
        e_regs = [Signal(range(emax + 1), name=f"e{i}", reset_less=True) for i in range(n)]
        e = Array(e_regs)
        # the sum and the divider's registers are loaded before they are read (no reset: no
        # reset net OR-ed into their clears)
        total = Signal(range(n * emax + 1), reset_less=True)
        rem = Signal(range(2 * n * emax + 1), reset_less=True)
        q = Signal(Q_BITS, reset_less=True)
        bit = Signal(range(Q_BITS + 1))
        p = Array(self.p[i] for i in range(n))
        table = Array(int(x) for x in EXP2_TABLE)

        # one multiplier, requested a cycle and answered the next (the stage's lanes, or an
        # internal one): v = d log2(e) in EXP (d clamped), then e_k q in MUL; G cycles a product
        G = self.groups or 1
        MB = self.mb_bits
        dc = exp_clamp(self.fracs)
        ma, mb, men, xexp = Signal(E_BITS), Signal(MB), Signal(), Signal()
        g, g1, k1, v1, x1 = (Signal(range(max(2, G))), Signal(range(max(2, G))), Signal(range(max(2, n))),
                             Signal(), Signal())
        mp = Signal(E_BITS + MB + 1)
        L = self.mul_latency
        self._multiplier(m, ma, mb, men, g, mp)
        # the request's tags travel alongside the multiplier's pipeline
        tags = [men, k, g, xexp]
        for _ in range(L - 1):
            nxt = [Signal.like(t_) for t_ in tags]
            m.d.sync += [a_.eq(b_) for a_, b_ in zip(nxt, tags)]
            tags = nxt
        m.d.sync += [v1.eq(tags[0]), k1.eq(tags[1]), g1.eq(tags[2]), x1.eq(tags[3])]
        if G == 1:
            prod = mp
        else:
            pacc = Signal(E_BITS + MB + 1, reset_less=True)
            shifted = Signal.like(pacc)
            with m.Switch(g1):
                for gi in range(G):
                    with m.Case(gi):
                        m.d.comb += shifted.eq(mp << (gi * self.group_shift))
            prod = Signal.like(pacc)
            m.d.comb += prod.eq(Mux(g1 == 0, 0, pacc) + shifted)
            with m.If(v1):
                m.d.sync += pacc.eq(prod)
        last = v1 & (g1 == G - 1)
        with m.If(last & ~x1):
            m.d.sync += p[k1].eq(prod >> (RECIP_BITS - P_FRAC))

        # exp: e = table[j6] >> ip (0 from ip >= 17); the table read takes a cycle
        ip = Signal(len(prod))
        j6 = Signal(EXP2_FRAC_BITS)
        for i, f in enumerate(self.fracs):
            ff = f + 16
            with m.If(self.frac_sel == i):
                m.d.comb += ip.eq(prod >> ff)
                if ff >= EXP2_FRAC_BITS:
                    m.d.comb += j6.eq(prod >> (ff - EXP2_FRAC_BITS))
                else:
                    m.d.comb += j6.eq(prod << (EXP2_FRAC_BITS - ff))
        # the product's table index, shift and class are registered first (the product is a sum
        # of the lanes' shifted partial products: no room for the table read behind it)
        ip0, big0, j60, k0e, ev0 = (Signal(5), Signal(), Signal(EXP2_FRAC_BITS), Signal(range(max(2, n))),
                                    Signal())
        m.d.sync += [ip0.eq(ip[:5]), big0.eq(ip >= P_FRAC + 1), j60.eq(j6), k0e.eq(k1), ev0.eq(last & x1)]
        ip1, big1, k1e, ev1 = Signal(5), Signal(), Signal(range(max(2, n))), Signal()
        tval = Signal(E_BITS)
        ten = Signal()
        m.d.comb += ten.eq(ev0)
        if self.ext_table:
            m.d.comb += [self.tab_en.eq(ten), self.tab_addr.eq(j60), tval.eq(self.tab_data)]
        else:
            m.d.sync += tval.eq(table[j60])
        m.d.sync += [ip1.eq(ip0), big1.eq(big0), k1e.eq(k0e), ev1.eq(ten)]
        # the table word is registered as it arrives (a block RAM without output register answers
        # late in the cycle, too late for the shifter), shifted into e the next cycle, and e
        # lands in its class a cycle later (too late for the sum behind it)
        tval_r, ipr, bigr, kre, evr = (Signal(E_BITS, reset_less=True), Signal(5), Signal(),
                                       Signal(range(max(2, n))), Signal())
        m.d.sync += [tval_r.eq(tval), ipr.eq(ip1), bigr.eq(big1), kre.eq(k1e), evr.eq(ev1)]
        ex, k2e, ev2 = Signal(range(emax + 1), reset_less=True), Signal(range(max(2, n))), Signal()
        m.d.sync += [ex.eq(Mux(bigr, 0, tval_r >> ipr)), k2e.eq(kre), ev2.eq(evr)]
        clear_total = Signal()      # the sum cleared after start from a flag, not the FSM state
        m.d.sync += [clear_total.eq(0), total.eq(Mux(clear_total, 0, Mux(ev2, total + ex, total)))]
        with m.If(ev2):
            m.d.sync += e[k2e].eq(ex)

        # the logits in a rotating register (loaded at start; s is stable over the run): the next
        # difference's logit is always sv[0], so no logit multiplexer sits in front of the
        # subtraction and the clamp
        sv = [Signal(signed(w), name=f"sv{i}", reset_less=True) for i in range(n)]
        rotate = Signal()
        with m.If(rotate):
            m.d.sync += [sv[i].eq(sv[(i + 1) % n]) for i in range(n)]
        sk = sv[0]
        # the counters' last values as flags registered with them (k == n - 1, g == G - 1,
        # bit == 1), and the states that rotate the logits as flags registered with the state:
        # the rotation's enable (every logit bit) and the counters' enables start from
        # flip-flops, not from compares and the state decode
        k_last, g_last, bit_one = Signal(init=int(n == 1)), Signal(init=int(G == 1)), Signal()
        in_exp0, in_exp = Signal(), Signal()

        def set_k(v):                 # v: 0 or "+1"
            m.d.sync += [k.eq(0 if v == 0 else k + 1), k_last.eq(int(n == 1) if v == 0 else k == n - 2)]

        def set_g(v):                 # v: 0 or "next" (wraps at G)
            if G > 1:
                m.d.sync += [g.eq(0 if v == 0 else Mux(g_last, 0, g + 1)),
                             g_last.eq(0 if v == 0 else Mux(g_last, 0, g == G - 2))]

        # the control is one-hot: a flip-flop per state (the chains of wait states are shift
        # registers), each decided a cycle ahead, so no state decode sits in front of the
        # counters' enables, the difference's register or the multiplier's request
        ML = max_levels(n)
        idle, st_max, st_div, st_mul, done = (Signal(init=1, name="st_idle"), Signal(name="st_max"),
                                              Signal(name="st_div"), Signal(name="st_mul"),
                                              Signal(name="st_done"))
        # after the last EXP request: the multiplier's pipeline (L - 1), the last product's
        # table index, its table read, its word, its shift and its landing (5), then DIV
        exp_wait = [Signal(name=f"st_exp_w{i}") for i in range(L - 1 + 5)]
        # after the last MUL request: MUL_LAST and the multiplier's pipeline (L), then DONE
        mul_wait = [Signal(name=f"st_mul_w{i}") for i in range(L)]
        # the states that load the difference register (and rotate the logits): EXP0, the last
        # group of an EXP request
        load_d = rotate
        max_end = (k == ML - 2) if ML > 1 else Const(0)
        exp_end = in_exp & g_last & k_last
        mul_end = st_mul & g_last & k_last
        m.d.sync += [
            idle.eq((idle & ~self.start) | done),
            st_max.eq((idle & self.start & (ML > 1)) | (st_max & ~max_end)),
            in_exp0.eq((idle & self.start & (ML <= 1)) | (st_max & max_end)),
            in_exp.eq(in_exp0 | (in_exp & ~(g_last & k_last))),
            exp_wait[0].eq(exp_end),
            *(exp_wait[i].eq(exp_wait[i - 1]) for i in range(1, len(exp_wait))),
            st_div.eq(exp_wait[-1] | (st_div & ~bit_one)),
            st_mul.eq((st_div & bit_one) | (st_mul & ~(g_last & k_last))),
            mul_wait[0].eq(mul_end),
            *(mul_wait[i].eq(mul_wait[i - 1]) for i in range(1, L)),
            done.eq(mul_wait[-1]),
        ]
        m.d.comb += [self.busy.eq(~idle & ~done), self.done.eq(done), rotate.eq(in_exp0 | (in_exp & g_last))]
        # k and g are 0 at start: from reset, and from the last MUL request (k's and g's other
        # clears are at the ends of MAX and EXP), so start loads only the logits and the sum
        with m.If(idle & self.start):
            m.d.sync += clear_total.eq(1)
        # the logits are loaded in every idle cycle (sv is read only over a run, and the cycle of
        # start is idle): the 230-odd enables of a wide softmax start from the state flip-flop,
        # not from start
        with m.If(idle):
            m.d.sync += [sv[i].eq(self.s[i]) for i in range(n)]
        with m.If(st_max):            # the tree's last levels, then the first difference
            set_k("+1")
            with m.If(max_end):
                set_k(0)
        # the clamped difference d_k is registered a request ahead (the logit multiplexer and
        # the subtraction stay off the path into the lanes' operand registers)
        dreg = Signal(MB, reset_less=True)
        m.d.comb += d.eq(mx - sk)
        with m.If(load_d):
            m.d.sync += dreg.eq(Mux(d >= dc, dc, d))
        with m.If(in_exp):
            m.d.comb += [men.eq(1), xexp.eq(1), ma.eq(LOG2E_Q16), mb.eq(dreg)]
            set_g("next")
            with m.If(g_last):
                set_k("+1")
                with m.If(k_last):
                    set_k(0)
                    m.d.sync += [rem.eq(1 << (RECIP_BITS - Q_BITS)), q.eq(0), bit.eq(Q_BITS),
                                 bit_one.eq(int(Q_BITS == 1))]
        with m.If(st_div):            # Q_BITS steps, the last one straight into MUL
            # one subtraction: its sign is the compare (no second carry chain beside it)
            r2 = rem << 1
            diff = Signal(signed(len(r2) + 1))
            m.d.comb += diff.eq(r2 - total)
            m.d.sync += [bit.eq(bit - 1), bit_one.eq(bit == 2)]
            with m.If(~diff[-1]):
                m.d.sync += [rem.eq(diff), q.eq((q << 1) | 1)]
            with m.Else():
                m.d.sync += [rem.eq(r2), q.eq(q << 1)]
        with m.If(st_mul):
            # e rotates as k steps (e_k is always e0: no k-indexed multiplexer in front of the
            # lanes' operand register); n steps bring it back, EXP writes it anew next run
            m.d.comb += [ma.eq(e_regs[0]), mb.eq(q), men.eq(1)]
            set_g("next")
            with m.If(g_last):
                set_k("+1")
                m.d.sync += [e_regs[i].eq(e_regs[(i + 1) % n]) for i in range(n)]
                with m.If(k_last):
                    set_k(0)
        return m
