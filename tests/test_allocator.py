"""The launch entry points re-execute once under a malloc set-up that suits XLA:CPU (launch/allocator.py)."""
import os
import subprocess
import sys

import pytest

from conftest import HANG_GUARD_S
from flaxforge.launch import allocator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_is_glibc_huge_pages_keeping_the_users_tunables():
  env = allocator.environment({"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                              exists=lambda p: True, linux_glibc=True)
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:" + allocator.HUGE_PAGES
  assert env["PATH"] == "/bin" and env[allocator.APPLIED] == "glibc-hugetlb" and "LD_PRELOAD" not in env


def test_jemalloc_on_request_with_retention_else_huge_pages():
  env = allocator.environment({allocator.CHOICE: "jemalloc"}, exists=lambda p: p == allocator.JEMALLOC[0],
                              linux_glibc=True)
  assert env["LD_PRELOAD"] == allocator.JEMALLOC[0] and env["MALLOC_CONF"] == allocator.RETAIN
  assert env[allocator.APPLIED] == "jemalloc" and "GLIBC_TUNABLES" not in env
  missing = allocator.environment({allocator.CHOICE: "jemalloc"}, exists=lambda p: False, linux_glibc=True)
  assert missing["GLIBC_TUNABLES"] == allocator.HUGE_PAGES and "LD_PRELOAD" not in missing
  own = allocator.environment({allocator.CHOICE: "jemalloc", "LD_PRELOAD": "/x/tcmalloc.so"},
                              exists=lambda p: True, linux_glibc=True)
  assert own["LD_PRELOAD"] == "/x/tcmalloc.so"  # a preload of the user's own wins


def test_leaves_the_process_alone_once_applied_opted_out_or_not_glibc():
  assert allocator.environment({allocator.APPLIED: "glibc-hugetlb"}, linux_glibc=True) is None
  assert allocator.environment({allocator.CHOICE: "system"}, linux_glibc=True) is None
  assert allocator.environment({}, linux_glibc=False) is None


@pytest.mark.slow  # a subprocess CLI run
def test_an_unknown_choice_is_one_line_naming_the_values():
  env = {k: v for k, v in os.environ.items() if k not in (allocator.CHOICE, allocator.APPLIED)}
  out = subprocess.run([sys.executable, "-m", "flaxforge.launch.train", "--helpshort"], cwd=REPO, capture_output=True,
                       text=True, env={**env, allocator.CHOICE: "jemaloc"})
  assert out.returncode == 2
  assert out.stderr.strip() == ("error: FLAXFORGE_MALLOC must be auto, jemalloc or system, not 'jemaloc'; "
                                "unset it for the default")


@pytest.mark.slow  # a subprocess that re-executes itself
def test_an_entry_point_runs_under_it():
  env = {k: v for k, v in os.environ.items() if k not in (allocator.CHOICE, allocator.APPLIED)}
  code = ("import os, sys; sys.argv = ['x', '--helpshort']; from launch import common; "
          "common.allocator.reexec_once(); print('APPLIED=' + os.environ.get('FLAXFORGE_MALLOC_APPLIED', ''))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=HANG_GUARD_S)  # a re-exec that does not mark itself applied would loop forever
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "APPLIED=glibc-hugetlb", out.stdout


def test_a_config_asking_for_jemalloc_re_executes_once_more():
  installed = lambda p: p == allocator.JEMALLOC[0]
  first = allocator.environment({}, exists=installed, linux_glibc=True)  # common.run, before the config is read
  second = allocator.environment(first, exists=installed, linux_glibc=True, config_choice="jemalloc")
  assert second[allocator.APPLIED] == "jemalloc" and second["LD_PRELOAD"] == allocator.JEMALLOC[0]
  assert allocator.environment(second, exists=installed, linux_glibc=True, config_choice="jemalloc") is None
  assert allocator.environment(second, exists=installed, linux_glibc=True) is None  # no flip-flop back
  # not installed: huge pages stay; the user's FLAXFORGE_MALLOC wins over the config
  assert allocator.environment(first, exists=lambda p: False, linux_glibc=True, config_choice="jemalloc") is None
  assert allocator.environment({allocator.CHOICE: "system"}, exists=installed, linux_glibc=True,
                               config_choice="jemalloc") is None
  with pytest.raises(ValueError, match="config.malloc must be auto, jemalloc or system"):
    allocator.environment({}, linux_glibc=True, config_choice="tcmalloc")
