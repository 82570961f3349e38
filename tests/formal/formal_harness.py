"""Pieces of the formal harnesses: memory ports recorded during elaboration, stream rules."""


class MemoryPorts:
    """Records every memory port an elaboration creates: ``with MemoryPorts() as ports:
    frag = Fragment.get(dut, None)``; ``ports.read`` / ``ports.write`` are ``(memory, port)``."""

    def __enter__(self):
        from amaranth.lib import memory
        self.read, self.write, self._mem = [], [], memory.Memory
        self._saved = memory.Memory.read_port, memory.Memory.write_port
        real_read, real_write = self._saved

        def read_port(mem, *args, **kwargs):
            port = real_read(mem, *args, **kwargs)
            self.read.append((mem, port))
            return port

        def write_port(mem, *args, **kwargs):
            port = real_write(mem, *args, **kwargs)
            self.write.append((mem, port))
            return port

        memory.Memory.read_port, memory.Memory.write_port = read_port, write_port
        return self

    def __exit__(self, *exc):
        self._mem.read_port, self._mem.write_port = self._saved
        return False

    def in_range_asserts(self):
        """``Assert`` that every enabled access is inside its memory."""
        from amaranth.hdl import Assert
        out = []
        for mem, port in self.read:
            if port.domain != "comb":
                out.append(Assert(~port.en | (port.addr < mem.depth)))
        for mem, port in self.write:
            out.append(Assert(~port.en.any() | (port.addr < mem.depth)))
        return out


class StreamRule:
    """The valid/ready rules of a stream's producer: once ``valid`` is high and ``ready`` low,
    ``valid`` stays high and the payload stays the same in the next cycle."""

    def __init__(self, m, stream_if, name):
        from amaranth.hdl import Signal
        self.valid, self.ready, self.payload = stream_if.valid, stream_if.ready, stream_if.payload
        self.held = Signal(name=f"{name}_held")                      # valid & ~ready last cycle
        self.prev = Signal.like(self.payload, name=f"{name}_prev")
        m.d.sync += [self.held.eq(self.valid & ~self.ready), self.prev.eq(self.payload)]

    def _terms(self):
        return [~self.held | self.valid, ~self.held | (self.payload.as_value() == self.prev.as_value())]

    @property
    def asserts(self):
        """The rules as ``Assert`` s (of a producer under test)."""
        from amaranth.hdl import Assert
        return [Assert(t) for t in self._terms()]

    @property
    def assumes(self):
        """The rules as ``Assume`` s (of the environment's producer)."""
        from amaranth.hdl import Assume
        return [Assume(t) for t in self._terms()]
