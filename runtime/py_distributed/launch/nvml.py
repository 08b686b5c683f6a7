"""The machine's GPUs as NVML sees them, without torch and without initialising CUDA.

NVML (libnvidia-ml, the library behind nvidia-smi) ships with the driver. It counts every GPU of
the machine whatever CUDA_VISIBLE_DEVICES says, in PCI bus order (nvidia-smi's numbers), and names
each by its UUID, which two jobs with different masks both see: the identity a claim is keyed by
(`launch.gpus`). torch counts devices the same way under PYTORCH_NVML_BASED_CUDA_CHECK, but the
claim comes before the launcher imports torch, so that a bad request answers at once.
"""

import ctypes

_SUCCESS = 0
_UUID_BUFFER = 96  # NVML_DEVICE_UUID_V2_BUFFER_SIZE


def uuids() -> list[str] | None:
    """The UUIDs of the machine's GPUs by NVML index; None where there is no NVML (no NVIDIA
    driver: a CPU machine, a container without the driver mounted) or it cannot answer."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != _SUCCESS:
        return None
    try:
        count = ctypes.c_uint()
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != _SUCCESS:
            return None
        found = []
        for index in range(count.value):
            device = ctypes.c_void_p()
            uuid = ctypes.create_string_buffer(_UUID_BUFFER)
            if (
                nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(device)) != _SUCCESS
                or nvml.nvmlDeviceGetUUID(device, uuid, _UUID_BUFFER) != _SUCCESS
            ):
                return None
            found.append(uuid.value.decode("ascii", errors="replace"))
        return found
    finally:
        nvml.nvmlShutdown()
