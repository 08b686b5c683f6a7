"""The signed rendezvous state (launch/signed_state.py) on a real store, with a forger that
writes to it as anyone reaching the store can."""

import base64
import pickle
from datetime import timedelta

import pytest

from py_distributed.launch import signed_state, stores
from py_distributed.settings.job_secret import JobSecret

SECRET = JobSecret(b"0123456789abcdef0123456789abcdef")
PUBLIC = "job"
RUN_ID = SECRET.run_id(PUBLIC)  # the keys' run id


class Payload:
    """Records that it was unpickled: what a forged state would run on every node."""

    ran = False

    def __reduce__(self):
        return (Payload.run, ())

    @staticmethod
    def run():
        Payload.ran = True


@pytest.fixture
def store():
    return stores.listening("127.0.0.1", 0, timedelta(seconds=5))


def node(store, secret=SECRET):
    run_id = secret.run_id(PUBLIC) if secret else PUBLIC
    return signed_state.Backend(store, run_id, name="c10d-rounds", secret=secret, public_id=PUBLIC)


def forge(store, value, run_id=RUN_ID):
    store.set(f"torch.rendezvous.{run_id}", base64.b64encode(value))


def stored(store, run_id=RUN_ID):
    return base64.b64decode(store.get(f"torch.rendezvous.{run_id}"))


def test_the_store_holds_the_state_signed_and_every_node_of_the_job_reads_it(store):
    chief, other = node(store), node(store)
    state, _, written = chief.set_state(b"state")
    assert (state, written) == (b"state", True)
    assert stored(store).startswith(signed_state.MAGIC)
    assert stored(store) != b"state"
    assert other.get_state()[0] == b"state"


def test_a_forged_state_is_never_unpickled_and_the_next_write_replaces_it(store, capfd):
    chief = node(store)
    _, token, _ = chief.set_state(pickle.dumps("good"))
    forgeries = [
        base64.b64encode(pickle.dumps(Payload())),  # torch's own format
        base64.b64encode(signed_state.MAGIC + bytes(40) + pickle.dumps(Payload())),  # a bad HMAC
        b"%% no base64 %%",  # no state at all: torch's own backend would raise
    ]
    for forged in forgeries:
        store.set(f"torch.rendezvous.{RUN_ID}", forged)
        state, token = chief.get_state()
        assert pickle.loads(state) == "good"  # the last signed state, not the forged one
        assert token == forged  # so that the next write replaces it
    assert not Payload.ran
    assert capfd.readouterr().err.count("refused a rendezvous state") == 1  # said once
    state, _, written = chief.set_state(pickle.dumps("next"), token)
    assert written and pickle.loads(state) == "next"
    assert node(store).get_state()[0] == pickle.dumps("next")


def test_an_older_signed_state_written_again_is_refused(store):
    chief = node(store)
    chief.set_state(pickle.dumps("first"))
    old = store.get(f"torch.rendezvous.{RUN_ID}")
    _, token = chief.get_state()
    chief.set_state(pickle.dumps("second"), token)
    store.set(f"torch.rendezvous.{RUN_ID}", old)  # a replay of what someone read before
    assert pickle.loads(chief.get_state()[0]) == "second"


def test_a_node_that_has_read_no_signed_state_refuses_a_forged_one(store):
    node(store)  # the chief, whose marker is there
    forge(store, pickle.dumps(Payload()))
    with pytest.raises(signed_state.Refused, match="not signed with this node's secret"):
        node(store).get_state()
    assert not Payload.ran


def test_the_marker_copied_into_the_state_is_no_signed_state(store):
    node(store)
    forge(store, stored(store, PUBLIC))
    with pytest.raises(signed_state.Refused):
        node(store).get_state()


def test_a_node_without_the_secret_is_refused_under_the_public_run_id_without_writing(store):
    node(store).set_state(b"state")
    with pytest.raises(signed_state.Refused, match="a secret this node does not have"):
        node(store, secret=None).get_state()
    assert node(store).get_state()[0] == b"state"


def test_a_node_with_another_secret_says_so_and_finds_none_of_the_jobs_state(store, capfd):
    node(store).set_state(b"state")
    other = node(store, JobSecret(b"another secret of 32 bytes......"))
    assert "is not this job's" in capfd.readouterr().err
    assert other.get_state() is None  # its keys are its own secret's


def test_a_marker_someone_else_wrote_first_does_not_stop_the_job(store, capfd):
    store.set(f"torch.rendezvous.{PUBLIC}", base64.b64encode(b"anything"))
    chief = node(store)
    assert "is not this job's" in capfd.readouterr().err
    assert chief.set_state(b"state")[2]
