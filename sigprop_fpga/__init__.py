"""sigprop-fpga: compile networks into forward-only SigProp training hardware.

``import sigprop_fpga as sf; d = sf.load("net.yaml")`` gives a :class:`~sigprop_fpga.api.Design`
whose methods are the toolchain's steps (``check``, ``train``, ``compile``, ``simulate``,
``build``, ``run``, ``report``, ``flow``); see :mod:`sigprop_fpga.api`.
"""

from .api import (STEPS, BuildResult, CheckResult, CompileResult, Design, Result, RunResult, SimResult,
                  TrainResult, load)

__all__ = ["load", "Design", "Result", "CheckResult", "TrainResult", "CompileResult", "SimResult",
           "BuildResult", "RunResult", "STEPS"]
