import pytest
import torch

from models import cameras as cam
from models.genhead.ground_truth import GroundTruth, identity_ids
from models.genhead.procedural import ProceduralGenHead


@pytest.fixture(scope="session")
def gen():
    return ProceduralGenHead()


@pytest.fixture(scope="session")
def gt(gen):
    return GroundTruth(gen)


@pytest.fixture(scope="session")
def some_id():
    return identity_ids(3, 1)[0]


def front(yaw=0.0, pitch=0.0, radius=cam.DEFAULT_RADIUS):
    return cam.orbit_label(torch.tensor([yaw]), torch.tensor([pitch]), radius)
