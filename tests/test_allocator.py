"""The launch entry points re-execute once under a malloc set-up that suits XLA:CPU (launch/allocator.py)."""
import os
import subprocess
import sys

from launch import allocator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_prefers_jemalloc_with_retention():
  env = allocator.environment({"PATH": "/bin"}, exists=lambda p: p == allocator.JEMALLOC[0], linux_glibc=True)
  assert env["LD_PRELOAD"] == allocator.JEMALLOC[0] and env["MALLOC_CONF"] == allocator.RETAIN
  assert env["PATH"] == "/bin" and env[allocator.MARK] == "jemalloc" and "GLIBC_TUNABLES" not in env


def test_falls_back_to_glibc_huge_pages_keeping_the_users_tunables():
  env = allocator.environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, exists=lambda p: False,
                              linux_glibc=True)
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:" + allocator.HUGE_PAGES
  assert "LD_PRELOAD" not in env
  # a preload of the user's own wins over jemalloc
  env = allocator.environment({"LD_PRELOAD": "/x/tcmalloc.so"}, exists=lambda p: True, linux_glibc=True)
  assert env["LD_PRELOAD"] == "/x/tcmalloc.so" and env["GLIBC_TUNABLES"] == allocator.HUGE_PAGES


def test_leaves_the_process_alone_once_set_opted_out_or_not_glibc():
  assert allocator.environment({allocator.MARK: "jemalloc"}, linux_glibc=True) is None
  assert allocator.environment({allocator.MARK: "system"}, linux_glibc=True) is None
  assert allocator.environment({}, linux_glibc=False) is None


def test_an_entry_point_runs_under_it():
  env = {k: v for k, v in os.environ.items() if k not in (allocator.MARK, "LD_PRELOAD")}
  code = ("import os, sys; sys.argv = ['x', '--helpshort']; from launch import common; "
          "common.allocator.reexec_once(); print('MARK=' + os.environ.get('FLAXFORGE_MALLOC', ''))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() in ("MARK=jemalloc", "MARK=glibc-hugetlb"), out.stdout
