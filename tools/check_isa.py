"""Check that a portable build of gankernels._C has AVX instructions only where it chooses them at run time.

The CPU kernels are compiled for the baseline instruction set and again for AVX2 and AVX-512 (csrc/cpu/isa.h); the
copies for the two levels live in the namespaces gankernels::isa_avx2 and gankernels::isa_avx512, which run only on
a CPU that torch reports as having them. Any other function with an AVX instruction (VEX / EVEX encoded, ymm / zmm
or mask registers) would crash an older CPU with SIGILL: typically a function from a header, instantiated in a level
file and merged by the linker with the baseline copies. This lists such functions and exits 1 if there are any.

    python tools/check_isa.py [path/to/_C.so]     (default: the gankernels._C that Python imports)

It also lists the element functions (an activation, a conversion, vmath's exp) that were not inlined: an out-of-line
copy means a call is left in some kernel loop, which then stays scalar (GCC's inliner gave up on them once, silently:
benchmarks/NOTES.md); they are always_inline (GK_HD), so there should be none.

Needs objdump (binutils); x86-64 only. A build with GANKERNELS_NATIVE=1 (-march=native) is AVX throughout by
design: it says so and exits 0.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

LEVELS = ("gankernels::isa_avx2::", "gankernels::isa_avx512::")
BASE_KERNEL = "gankernels::isa_base::bias_act_run"
# The element functions the kernels' loops call: each must be inlined (no out-of-line copy in the library).
ELEMENT_FUNCTIONS = re.compile(
    r"gankernels::(activation|activation_grad|bias_act_forward_element|bias_act_backward_element)<|gankernels::vmath::"
    r"|gankernels::cpu::(half_to_float|float_to_half|bfloat16_to_float|float_to_bfloat16|store<)"
    r"|gankernels::detail::|::(act_of|act_grad|at_or|gather)<"
)
_FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")
_AVX_OPERAND = re.compile(r"%[yz]mm\d+|%k[0-7]\b|%xmm(1[6-9]|2\d|3[01])\b")


def _is_avx(line: str) -> bool:
    """Whether one disassembled instruction line (address, tab, mnemonic operands) needs AVX."""
    parts = line.split("\t")
    if len(parts) < 2:
        return False
    instruction = parts[-1].strip()
    mnemonic = instruction.split(" ", 1)[0]
    return (mnemonic.startswith("v") and mnemonic not in ("verr", "verw")) or bool(_AVX_OPERAND.search(instruction))


def _disassembly(path: str) -> list[str]:
    return subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", path], check=True, capture_output=True,
                          text=True).stdout.splitlines()  # fmt: skip


def avx_functions(path: str) -> dict[str, int]:
    """{demangled function name: number of AVX instructions} over every function of the library at `path`."""
    found: dict[str, int] = {}
    function = None
    for line in _disassembly(path):
        m = _FUNCTION.match(line)
        if m:
            function = m.group(1)
        elif function is not None and _is_avx(line):
            found[function] = found.get(function, 0) + 1
    return found


def functions(path: str) -> list[str]:
    """The demangled names of every function in the library at `path`."""
    return [m.group(1) for m in map(_FUNCTION.match, _disassembly(path)) if m and "@plt" not in m.group(1)]


def out_of_line(path: str) -> list[str]:
    """The element functions (ELEMENT_FUNCTIONS) that have an out-of-line copy: a call left in a kernel loop."""
    return sorted({name for name in functions(path) if ELEMENT_FUNCTIONS.search(name)})


def misplaced(path: str) -> tuple[bool, list[str]]:
    """(whether the build is portable, the functions outside the level namespaces that use AVX)."""
    found = avx_functions(path)
    if any(name.startswith(BASE_KERNEL) for name in found):
        return False, []  # -march=native: the baseline kernel itself uses AVX
    return True, sorted(name for name in found if not any(level in name for level in LEVELS))


def main(argv: list[str]) -> int:
    if shutil.which("objdump") is None:
        print("check_isa: objdump not found (install binutils)")
        return 2
    if len(argv) > 1:
        path = argv[1]
    else:
        import gankernels._C

        path = gankernels._C.__file__
    calls = out_of_line(path)
    if calls:
        print(f"check_isa: {len(calls)} element functions not inlined (a call in a kernel loop keeps it scalar):")
        for name in calls[:40]:
            print(f"  {name}")
        return 1
    portable, bad = misplaced(path)
    if not portable:
        print(f"check_isa: {path} is a -march=native build (AVX in the baseline kernels too): nothing to check")
        return 0
    if bad:
        print(f"check_isa: {len(bad)} functions outside {', '.join(LEVELS)} use AVX (SIGILL on an older CPU):")
        for name in bad[:40]:
            print(f"  {name}")
        return 1
    print(f"check_isa: {path}: AVX only in the AVX2 / AVX-512 kernel copies")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
