"""The board top's block RAM registers (``bram_regs``): on the ECP5's slow block RAMs only."""

import pytest

from sigprop_fpga.boards.flow import prepare_network
from sigprop_fpga.boards.top import SigPropBoardCore


@pytest.mark.parametrize("board, on", [("ulx3s-85f", True), ("icebreaker", False)])
def test_board_top_registers_block_ram_reads_on_the_ecp5_only(board, on):
    top = prepare_network("examples/digits.yaml", board, samples=None).top()
    assert top.core.bram_regs is on
    assert top.core.link.link.registered_reads is on


def test_bram_regs_must_be_a_bool():
    with pytest.raises(TypeError, match="bram_regs must be a bool, not 1"):
        SigPropBoardCore(None, None, divisor=8, bram_regs=1)


@pytest.mark.parametrize("board, on", [("ulx3s-85f", True), ("icebreaker", False)])
def test_board_top_replicates_the_reset_on_the_ecp5_only(board, on):
    top = prepare_network("examples/digits.yaml", board, samples=None).top()
    assert top.core.reset_tree is on


def test_reset_tree_must_be_a_bool():
    with pytest.raises(TypeError, match="reset_tree must be a bool, not 'yes'"):
        SigPropBoardCore(None, None, divisor=8, reset_tree="yes")
