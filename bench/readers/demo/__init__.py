"""Built-in synthetic demo data: download-free stand-ins for the paper's datasets.

The ``demo`` reader turns a dataset card into a stream of synthetic flows
generated in code (:mod:`bench.readers.demo.reader`). Cards select a
generator and its size in their ``options`` table
(:class:`~bench.readers.demo.reader.DemoOptions`), e.g.::

    reader = "demo"
    options = { generator = "fundus", flows = 3, frames = 8, size = 192, seed = 0 }

Generators (one module each; drawing helpers in :mod:`bench.readers.demo.draw`)
-------------------------------------------------------------------------------
``fundus`` (image flow, RGB uint8)
    Retinal photograph: orange-red background with vignetting inside a
    circular field of view, vessels radiating from a bright optic disc with a
    brighter cup. Targets ``disc`` and ``cup`` (the cup lies strictly inside
    the disc, as in REFUGE where the disc label includes the cup).
``dermoscopy`` (image flow, RGB uint8)
    Skin-tone background with texture and hairs, one brown lesion with a
    non-convex boundary. Target ``lesion``. With ``aspect_jitter`` > 0 the
    image widths vary within a flow (ISIC images come in many shapes).
``ultrasound`` (image flow, grey uint8)
    Curvilinear-probe sector with layered tissue and Rayleigh speckle, one
    hypoechoic nodule with an echogenic rim and posterior enhancement.
    Target ``nodule``.
``cells`` (image flow, RGB uint8)
    Stained blood smear crop around one white blood cell, red cells around it.
    Targets follow the WBC dataset's mask (0 background, 128 cytoplasm,
    255 nucleus): ``cytoplasm`` is the cytoplasm only (the cell minus its
    nucleus, a ring), ``nucleus`` the multi-lobed nucleus.
``ct`` (volume, float32 in Hounsfield units)
    Contrast-enhanced abdominal CT: body with fat and muscle walls, spine,
    bowel, and the targets ``liver``, ``spleen``, ``kidney_left``,
    ``kidney_right`` and ``aorta``. Anatomy is defined in millimetres, so each
    organ covers only part of the slab and has slices where it is absent.
    Intensities are generated in HU; the card option ``window`` (the demo
    card uses the soft-tissue window [-160, 240]) clips and scales them to
    [0, 1] as the file readers do for a windowed CT card. Image
    orientation is radiological: anterior at the top, the patient's right on
    the image's left.

Conventions
-----------
- Determinism: every random number comes from a NumPy generator seeded by
  ``(generator, seed, flow, role, index)``, so a frame never depends on the
  iteration order, on ``limit`` or on other frames.
- 2D images are grouped by synthetic patient (``images_per_patient`` images
  share one patient's anatomy and colours) so that confidence intervals can
  resample patients; each image is its own case.
- Spacing: 2D flows have ``spacing=None`` (pixel units), as the real 2D
  datasets they stand in for (REFUGE, ISIC, WBC, TNMIX slices) do not carry a
  physical pixel size. Volumes carry ``(slice, row, col)`` spacing in mm,
  anisotropic, default ``(5.0, 3.0, 3.0)``.
- ``meta`` records the generator's parameters and :data:`DEMO_VERSION`, which
  is bumped whenever the generated data change.
"""

from bench.readers.demo.ct import ct_volume
from bench.readers.demo.reader import (
    DEMO_VERSION,
    GENERATORS,
    DemoFlowRef,
    DemoGenerator,
    DemoOptions,
    DemoReader,
    expected_case_count,
    flow_id,
    generate_flow,
)

__all__ = ["DEMO_VERSION", "GENERATORS", "DemoFlowRef", "DemoGenerator", "DemoOptions",
           "DemoReader", "ct_volume", "expected_case_count", "flow_id", "generate_flow"]
