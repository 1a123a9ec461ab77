"""Run llama-cpp-python's server with weights in plain CPU buffers (no AMX/repack "extra buffer types").

Run by the server's own interpreter: ``python tests/llama_launch.py --model GGUF ...`` (same
arguments as ``python -m llama_cpp.server``). Why: a llama.cpp built natively on a CPU that
reports AMX runs AMX tile instructions from its AMX buffer type, and where the kernel does not
grant AMX tile state (containers, some VMs; this machine) the first decode dies of SIGILL.
``use_extra_bufts=False`` keeps llama.cpp on its ordinary kernels (slower, same model).
"""

import runpy

import llama_cpp.llama_cpp as lib

_default_params = lib.llama_model_default_params


def _params():
    p = _default_params()
    p.use_extra_bufts = False
    return p


lib.llama_model_default_params = _params
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
