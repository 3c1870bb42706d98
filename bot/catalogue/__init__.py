"""The model catalogue: which models exist, what each allows and costs, and who hosts it."""

from bot.catalogue.catalogue import Catalogue, Router, load_catalogue
from bot.catalogue.spec import Host, ModelSpec, aspect_of, resolution_of

__all__ = ["Catalogue", "Host", "ModelSpec", "Router", "aspect_of", "load_catalogue", "resolution_of"]
