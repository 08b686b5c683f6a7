"""Where a job's secret comes from (settings/job_secret.py): each bad one is one line."""

import pytest

from py_distributed.errors import UsageError
from py_distributed.settings import job_secret

SECRET = "7f" * 16


def secret_file(tmp_path, text=SECRET + "\n", mode=0o600):
    path = tmp_path / "secret"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_no_variable_is_no_secret():
    assert job_secret.read({}) is None


def test_a_file_or_a_variable_gives_the_secret_without_its_newline(tmp_path):
    from_file = job_secret.read({job_secret.FILE_ENV: secret_file(tmp_path)})
    assert from_file == job_secret.read({job_secret.VALUE_ENV: SECRET})
    assert from_file.secret == SECRET.encode()
    assert SECRET not in repr(from_file)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {job_secret.FILE_ENV: "/nonexistent/secret"},
            "PY_DISTRIBUTED_JOB_SECRET_FILE='/nonexistent/secret': cannot read it (No such file",
        ),
        ({job_secret.VALUE_ENV: "short"}, "a secret of 5 bytes; use 16 or more random bytes"),
        (
            {job_secret.VALUE_ENV: SECRET, job_secret.FILE_ENV: "/x"},
            "PY_DISTRIBUTED_JOB_SECRET_FILE and PY_DISTRIBUTED_JOB_SECRET are both set: keep one",
        ),
    ],
)
def test_a_secret_that_cannot_be_used_is_one_line_naming_it_and_the_fix(environ, message):
    with pytest.raises(UsageError) as error:
        job_secret.read(environ)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_secret_file_every_user_can_read_is_refused(tmp_path):
    path = secret_file(tmp_path, mode=0o644)
    with pytest.raises(UsageError, match=r"is open to every user \(mode -rw-r--r--\): chmod 600"):
        job_secret.read({job_secret.FILE_ENV: path})


def test_the_run_id_is_the_secrets_and_names_neither_it_nor_another_jobs():
    one, other = job_secret.JobSecret(SECRET.encode()), job_secret.JobSecret(b"x" * 32)
    assert one.run_id("slurm-7") == one.run_id("slurm-7")
    assert one.run_id("slurm-7").startswith("slurm-7-")
    assert len({one.run_id("slurm-7"), one.run_id("slurm-8"), other.run_id("slurm-7")}) == 3
    assert SECRET not in one.run_id("slurm-7")
