"""Offline data: reward-free exploration (`collect`), stored as observed (`Dataset`)."""

from hplan.data.collect import POLICIES, collect, make_collect
from hplan.data.dataset import FORMAT_VERSION, Dataset, load, save

__all__ = ["POLICIES", "FORMAT_VERSION", "Dataset", "collect", "make_collect", "load", "save"]
