"""DICOM Structured Reports of xscan's results: one Comprehensive 3D SR (TID 1500 Measurement Report) per study.

The report joins the scored images' study as a new series. Its content tree, for a PACS viewer
and for programs (the IHE AI Results profile reads the same template):

- observer: the device xscan, with the model id as its model name;
- the Image Library (TID 1600): each reported image with its modality and date, where viewers
  look up a report's references;
- one measurement group (TID 1501) per scored image: a reference to the image (its SOP Class and
  Instance UIDs), the finding Pneumonia, the qualitative evaluation Present / Absent at the
  threshold with the probability as a measurement (unit UCUM "1"), or, for an image out of
  scope, Undetermined with a comment giving the reason and no probability (the model was not built
  for it: its number means nothing); and the algorithm (xscan, its version; parameters: the model
  id, with any site suffix, and the threshold);
- one more group for the study's verdict (no image reference: it is about every image in the
  report): the largest in-scope probability and Present / Absent, or Undetermined;
- Qualitative Evaluations: a comment saying what was scored and that xscan aids a physician and is
  not a diagnostic device. VerificationFlag is UNVERIFIED: no person has read it.

Codes: SNOMED CT 233604007 Pneumonia, 52101004 Present, 272519000 Absent, 373068000 Undetermined,
399208008 Plain chest X-ray (the procedure); DCM 122157 Probability, 121106 Comment; UMLS C0034375
Qualitative Evaluations. The UIDs are derived (below the site's UID root) from the study, the
images' UIDs, the results, this install's device UID and the report it amends, so the same
results give the same report (a re-run rewrites nothing and sends nothing twice). Changed results
amend: the new report gets the next InstanceNumber in the same series and a Predecessor Documents
Sequence naming the report it replaces, which is the one in the reports' folder for the study
(moved to REPLACED_FOLDER, never deleted). The header carries Software Versions (xscan's, the model id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from xscan.about import DISCLAIMER, __version__
from xscan.errors import ResultsWriteError
from xscan.model.classes import NEGATIVE, OUT_OF_SCOPE, POSITIVE
from xscan.pacs.identity import DEFAULT_UID_ROOT, derived_uid, software_versions
from xscan.pacs.studies import BY_STUDY, Study, StudyFile, verdict_words

PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
PRESENT, ABSENT, UNDETERMINED = codes.SCT.Present, codes.SCT.Absent, codes.SCT.Undetermined
CHEST_X_RAY = Code("399208008", "SCT", "Plain chest X-ray")
PROBABILITY = codes.DCM.Probability
NO_UNITS = codes.UCUM.NoUnits
COMMENT = codes.DCM.Comment
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
EVALUATION_OF_LABEL = {POSITIVE: PRESENT, NEGATIVE: ABSENT, OUT_OF_SCOPE: UNDETERMINED}

SERIES_NUMBER = 9901  # high, so the report's series sorts after the images' in a viewer
SERIES_DESCRIPTION = "xscan pneumonia scores (unverified)"
REPLACED_FOLDER = (
    "replaced"  # below the reports' folder: each amended report, as <StudyInstanceUID>.<InstanceNumber>.dcm
)
MANUFACTURER = "xscan"
# What an amendment reads of the report it replaces (who wrote it, its number and UIDs, whom it amended).
PREVIOUS_REPORT_TAGS = [
    "Manufacturer",
    "InstanceNumber",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PredecessorDocumentsSequence",
]
# Type 2 attributes of the patient and study that the report must carry, empty where the images lack them.
REQUIRED_EVIDENCE = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


@dataclass(frozen=True)
class Report:
    """A built structured report and the study it belongs to."""

    study: Study
    dataset: hd.sr.Comprehensive3DSR

    @property
    def sop_instance_uid(self) -> str:
        """Give the report's SOPInstanceUID."""
        return str(self.dataset.SOPInstanceUID)

    @property
    def file_name(self) -> str:
        """Give the report's file name: its study's key, then .dcm."""
        return f"{self.study.key}.dcm"


@dataclass(frozen=True)
class Identity:
    """Who writes the reports: the site's UID root and this install's Device Observer UID (xscan.pacs.identity)."""

    uid_root: str = DEFAULT_UID_ROOT
    device_uid: str = ""


def scored_images(study: Study) -> list[StudyFile]:
    """Give the DICOM images of a study that have a probability.

    Args:
        study: The study.

    Returns:
        Its scored images, out-of-scope ones included (reported as not assessed).
    """
    return [
        f
        for f in study.files
        if f.header is not None and f.row.probability is not None and "SOPInstanceUID" in f.header
    ]


def report_uid(study: Study, identity: Identity, predecessor_uid: str = "") -> str | None:
    """Give the SOP Instance UID of a study's report.

    Args:
        study: The study.
        identity: The site's UID root and this install's device UID.
        predecessor_uid: The report this one amends ("" for none).

    Returns:
        The UID, or None when the study gets no report.
    """
    images = scored_images(study)
    if study.grouped_by != BY_STUDY or not images:
        return None
    return derived_uid(identity.uid_root, [*_identity(study, images, identity), f"amends {predecessor_uid}"])


def build_report(study: Study, identity: Identity = Identity(), previous: Dataset | None = None) -> Report | None:
    """Build the structured report of a DICOM study with at least one scored image.

    Args:
        study: The study.
        identity: The site's UID root and this install's device UID.
        previous: The report this one amends: gives it the next InstanceNumber and its Predecessor
            Documents Sequence.

    Returns:
        The report, or None for any other study.
    """
    images = scored_images(study)
    sop_instance_uid = report_uid(study, identity, str(previous.SOPInstanceUID) if previous is not None else "")
    if sop_instance_uid is None:
        return None
    verdict = study.verdict()
    algorithm = hd.sr.AlgorithmIdentification(
        name="xscan",
        version=__version__,
        parameters=[f"model {verdict.model}", f"threshold {verdict.threshold:.6f}"],
        manufacturer=MANUFACTURER,
    )
    groups = [_image_group(image, number, algorithm, identity) for number, image in enumerate(images, start=1)]
    groups.append(_study_group(study, algorithm, identity))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=identity.device_uid or derived_uid(identity.uid_root, ["xscan device", verdict.model]),
            name="xscan",
            manufacturer_name=MANUFACTURER,
            model_name=verdict.model,
        ),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CHEST_X_RAY,
        imaging_measurements=groups,
        referenced_images=[_library_entry(image.header) for image in images],
    )
    content[0].ContentSequence.append(_comments(study, len(images)))
    dataset = hd.sr.Comprehensive3DSR(
        evidence=[evidence(image.header) for image in images],
        content=content[0],
        series_instance_uid=derived_uid(identity.uid_root, [study.key, verdict.model, "xscan series"]),
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid,
        instance_number=int(previous.InstanceNumber) + 1 if previous is not None else 1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=SERIES_DESCRIPTION,
        previous_versions=[previous] if previous is not None else None,
    )
    dataset.SoftwareVersions = software_versions(verdict.model)
    return Report(study, dataset)


def _identity(study: Study, images: Sequence[StudyFile], identity: Identity) -> list[str]:
    """What the report says, as text: the same results make the same UID."""
    verdict = study.verdict()
    return [
        study.key,
        verdict.model,
        f"{verdict.threshold:.6f}",
        identity.device_uid,
        *(f"{image.header.SOPInstanceUID}={image.row.probability:.6f}:{image.row.scope}" for image in images),
    ]


def _library_entry(header: Dataset) -> Dataset:
    """HEADER as the Image Library (TID 1600) describes it.

    highdicom adds a radiograph's orientation and imager pixel spacing (TID 1603), which the
    template asks for only where the image has them; for a film without them it is given the
    header with Modality blank, so those rows are left out (the entry's modality comes from the SOP class).
    """
    entry = evidence(header)
    if not {"PatientOrientation", "ImagerPixelSpacing"} <= set(header.dir()):
        entry.Modality = ""
    return entry


def evidence(header: Dataset) -> Dataset:
    """A copy of an image's header with the patient and study attributes a derived object must carry.

    Args:
        header: The image's header.

    Returns:
        The copy, each of REQUIRED_EVIDENCE present (empty where the image lacks it).
    """
    copied = Dataset()
    copied.update(header)
    for keyword in REQUIRED_EVIDENCE:
        if keyword not in copied:
            setattr(copied, keyword, "")
    return copied


def save_atomically(dataset: Dataset, path: Path) -> None:
    """Write a DICOM file beside PATH first, then rename it over PATH: a reader never sees half a file.

    Args:
        dataset: The data set (a highdicom object or any pydicom Dataset with file meta).
        path: Where it goes.
    """
    temporary = path.with_name(path.name + ".tmp")
    dataset.save_as(temporary, enforce_file_format=True)
    temporary.replace(path)


def _image_group(
    image: StudyFile, number: int, algorithm: hd.sr.AlgorithmIdentification, identity: Identity
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    row = image.row
    # Out of scope: the model was not built for this image, so its probability is not a finding and is not written.
    measurements = [] if row.scope else [hd.sr.Measurement(name=PROBABILITY, value=row.probability, unit=NO_UNITS)]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(identity.uid_root, [str(image.header.SOPInstanceUID), row.model, "xscan image"]),
            identifier=f"image {number}",
        ),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(PNEUMONIA, EVALUATION_OF_LABEL[row.label])],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(image.header)],
    )
    if row.scope:
        group[0].ContentSequence.append(_text(f"not assessed: out of scope, {row.scope}"))
    return group


def _study_group(
    study: Study, algorithm: hd.sr.AlgorithmIdentification, identity: Identity
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    verdict = study.verdict()
    measurements = (
        [] if verdict.scope else [hd.sr.Measurement(name=PROBABILITY, value=verdict.probability, unit=NO_UNITS)]
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(identity.uid_root, [study.key, verdict.model, "xscan study"]), identifier="study verdict"
        ),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(PNEUMONIA, EVALUATION_OF_LABEL[verdict.label])],
    )


def _comments(study: Study, images: int) -> hd.sr.ContainerContentItem:
    verdict, counts = study.verdict(), study.counts()
    if verdict.scope:
        summary = f"Study verdict: {verdict_words(OUT_OF_SCOPE)}, no image in scope ({verdict.scope})."
    else:
        summary = (
            f"Study verdict: {verdict_words(verdict.label)}, the largest probability of pneumonia "
            "among the images in scope, "
            f"{verdict.probability:.6f}, against the threshold {verdict.threshold:.6f}."
        )
    files = f"{images} of {counts['files']} files of this study reported; {counts['out_of_scope']} out of scope."
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = hd.sr.ContentSequence([_text(summary), _text(files), _text(DISCLAIMER)])
    return container


def _text(value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=COMMENT, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


@dataclass(frozen=True)
class Written:
    """The reports in a folder after `write_reports`: every one's path, and how many were new, changed or amended."""

    paths: list[Path]
    new: int
    not_dicom: int  # files of the results that are not DICOM (or cannot be read as one now): no report
    studies_without_report: int  # DICOM studies none of whose images has a probability (all_skipped included)
    amended: int = 0  # of NEW: reports that replace an earlier one for their study (moved to REPLACED_FOLDER)
    all_skipped: int = 0  # DICOM studies every image of which the DICOM policy skipped: no report


def write_reports(studies: Sequence[Study], folder: Path, identity: Identity = Identity()) -> Written:
    """Write one report file per DICOM study with a scored image, <folder>/<StudyInstanceUID>.dcm.

    A file that holds the same report stays. A file holding another report of the study (results
    that changed, or a study that gained images) is amended: the new report names it as its
    predecessor and takes the next InstanceNumber, and the old file moves to
    <folder>/REPLACED_FOLDER/<StudyInstanceUID>.<its InstanceNumber>.dcm.

    Args:
        studies: The studies.
        folder: The reports' folder.
        identity: The site's UID root and this install's device UID.

    Returns:
        The report files, how many were new, and the files and studies that got no report.
    """
    paths, new, without, amended, all_skipped = [], 0, 0, 0, 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for study in studies:
            path = folder / f"{study.key}.dcm"
            previous = _previous_report(path) if study.grouped_by == BY_STUDY else None
            if previous is not None and report_uid(study, identity, _predecessor_of(previous)) == str(
                previous.SOPInstanceUID
            ):
                paths.append(path)
                continue
            report = build_report(study, identity, previous)
            if report is None:
                without += study.grouped_by == BY_STUDY
                all_skipped += study.grouped_by == BY_STUDY and all(f.row.skipped_by_policy for f in study.files)
                continue
            if previous is not None:
                replaced = folder / REPLACED_FOLDER / f"{study.key}.{previous.InstanceNumber}.dcm"
                replaced.parent.mkdir(exist_ok=True)
                path.replace(replaced)
                amended += 1
            save_atomically(report.dataset, path)
            paths.append(path)
            new += 1
    except OSError as error:
        raise ResultsWriteError(f"cannot write structured reports into {folder}: {error.strerror or error}") from None
    not_dicom = sum(f.header is None for study in studies for f in study.files)
    return Written(paths, new, not_dicom, without, amended, all_skipped)


def _previous_report(path: Path) -> Dataset | None:
    """The report xscan wrote at PATH before (the attributes an amendment needs), or None when there is none."""
    import pydicom

    if not path.exists():
        return None
    try:  # its header only: the content tree is never read, and a study's report grows with its images
        previous = pydicom.dcmread(path, specific_tags=PREVIOUS_REPORT_TAGS)
        return previous if previous.get("Manufacturer") == MANUFACTURER and "InstanceNumber" in previous else None
    except (OSError, ValueError, AttributeError):
        return None


def _predecessor_of(report: Dataset) -> str:
    """The SOP Instance UID REPORT amends, or "" for a first report."""
    for study in report.get("PredecessorDocumentsSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            for instance in series.get("ReferencedSOPSequence", []):
                return str(instance.ReferencedSOPInstanceUID)
    return ""
