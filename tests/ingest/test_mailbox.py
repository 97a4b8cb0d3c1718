import threading

from crowdwatch.ingest.mailbox import Mailbox

from .media import wait_until


def test_offer_replaces_the_untaken_item() -> None:
    box: Mailbox[int] = Mailbox()
    assert box.offer(1) is False
    assert box.offer(2) is True
    assert box.take(0) == 2
    assert box.take(0) is None


def test_put_waits_until_the_item_is_taken() -> None:
    box: Mailbox[int] = Mailbox()
    box.put(1)
    done = threading.Event()

    def producer() -> None:
        box.put(2)
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.1)  # blocked: the slot is full
    assert box.take(1) == 1
    wait_until(done.is_set, what="second put")
    assert box.take(1) == 2
    thread.join()


def test_close_wakes_a_blocked_producer() -> None:
    box: Mailbox[int] = Mailbox()
    box.put(1)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(box.put(2)))
    thread.start()
    box.close()
    thread.join(5)
    assert results == [False]
    assert box.take(0) is None


def test_finish_makes_take_return_at_once_once_empty() -> None:
    box: Mailbox[int] = Mailbox()
    box.offer(7)
    box.finish()
    assert box.take(60) == 7  # what is there is still handed out
    assert box.take(60) is None  # then at once, not after 60 s
    assert box.empty
