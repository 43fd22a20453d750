from n3net._memory import trim_cpu_heap


def test_trim_cpu_heap_is_safe_to_call() -> None:
    trim_cpu_heap()
    trim_cpu_heap()
