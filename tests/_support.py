"""Small builders shared by the tests."""
import numpy as np


def disc_object(shape, center, radius) -> np.ndarray:
    """A bool disc: a stand-in object mask."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius ** 2
