"""DICOM Structured Reports of xscan's results: one Comprehensive 3D SR (TID 1500 Measurement Report) per study.

The report joins the scored images' study as a new series. Its content tree, for a PACS viewer
and for programs (the IHE AI Results profile reads the same template):

- observer: the device xscan, with the model id as its model name;
- one measurement group (TID 1501) per scored image: a reference to the image (its SOP Class and
  Instance UIDs), the finding Pneumonia, the qualitative evaluation Present / Absent at the
  threshold, or Undetermined with a comment giving the out-of-scope reason, the probability as a
  measurement (unit UCUM "1"), and the algorithm (xscan, its version; parameters: the model id, with
  any site suffix, and the threshold);
- one more group for the study's verdict (no image reference: it is about every image in the
  report): the largest in-scope probability and Present / Absent, or Undetermined;
- Qualitative Evaluations: a comment saying what was scored and that xscan aids a physician and is
  not a diagnostic device. VerificationFlag is UNVERIFIED: no person has read it.

Codes: SNOMED CT 233604007 Pneumonia, 52101004 Present, 272519000 Absent, 373068000 Undetermined,
399208008 Plain chest X-ray (the procedure); DCM 122157 Probability, 121106 Comment; UMLS C0034375
Qualitative Evaluations. The UIDs are derived from the study, the images' UIDs and the results,
so the same results give the same report (a re-run rewrites nothing and sends nothing twice), and
changed results give a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from xscan.about import DISCLAIMER, __version__
from xscan.errors import ResultsWriteError
from xscan.model.classes import NEGATIVE, OUT_OF_SCOPE, POSITIVE
from xscan.pacs.studies import BY_STUDY, Study, StudyFile

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
MANUFACTURER = "xscan"
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
        return str(self.dataset.SOPInstanceUID)

    @property
    def file_name(self) -> str:
        return f"{self.study.key}.dcm"


def scored_images(study: Study) -> list[StudyFile]:
    """The DICOM images of STUDY that have a probability (out-of-scope ones included: they are reported as not assessed)."""
    return [
        f
        for f in study.files
        if f.header is not None and f.row.probability is not None and "SOPInstanceUID" in f.header
    ]


def build_report(study: Study) -> Report | None:
    """The structured report of a DICOM study with at least one scored image; None for any other study."""
    images = scored_images(study)
    if study.grouped_by != BY_STUDY or not images:
        return None
    verdict = study.verdict()
    algorithm = hd.sr.AlgorithmIdentification(
        name="xscan",
        version=__version__,
        parameters=[f"model {verdict.model}", f"threshold {verdict.threshold:.6f}"],
        manufacturer=MANUFACTURER,
    )
    groups = [_image_group(image, number, algorithm) for number, image in enumerate(images, start=1)]
    groups.append(_study_group(study, algorithm))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["xscan device", verdict.model]),
            name="xscan",
            manufacturer_name=MANUFACTURER,
            model_name=verdict.model,
        ),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CHEST_X_RAY,
        imaging_measurements=groups,
    )
    content[0].ContentSequence.append(_comments(study, len(images)))
    identity = _identity(study, images)
    dataset = hd.sr.Comprehensive3DSR(
        evidence=[_evidence(image.header) for image in images],
        content=content[0],
        series_instance_uid=generate_uid(entropy_srcs=[study.key, verdict.model, "xscan series"]),
        series_number=SERIES_NUMBER,
        sop_instance_uid=generate_uid(entropy_srcs=identity),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=SERIES_DESCRIPTION,
    )
    return Report(study, dataset)


def _identity(study: Study, images: Sequence[StudyFile]) -> list[str]:
    """What the report says, as text: the same results make the same UID."""
    verdict = study.verdict()
    return [
        study.key,
        verdict.model,
        f"{verdict.threshold:.6f}",
        *(f"{image.header.SOPInstanceUID}={image.row.probability:.6f}:{image.row.scope}" for image in images),
    ]


def _evidence(header: Dataset) -> Dataset:
    evidence = Dataset()
    evidence.update(header)
    for keyword in REQUIRED_EVIDENCE:
        if keyword not in evidence:
            setattr(evidence, keyword, "")
    return evidence


def _image_group(
    image: StudyFile, number: int, algorithm: hd.sr.AlgorithmIdentification
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    row = image.row
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=[str(image.header.SOPInstanceUID), row.model, "xscan image"]),
            identifier=f"image {number}",
        ),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm,
        measurements=[hd.sr.Measurement(name=PROBABILITY, value=row.probability, unit=NO_UNITS)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(PNEUMONIA, EVALUATION_OF_LABEL[row.label])],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(image.header)],
    )
    if row.scope:
        group[0].ContentSequence.append(_text(f"not assessed: out of scope, {row.scope}"))
    return group


def _study_group(study: Study, algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    verdict = study.verdict()
    measurements = (
        [] if verdict.scope else [hd.sr.Measurement(name=PROBABILITY, value=verdict.probability, unit=NO_UNITS)]
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=[study.key, verdict.model, "xscan study"]), identifier="study verdict"
        ),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(PNEUMONIA, EVALUATION_OF_LABEL[verdict.label])],
    )


def _comments(study: Study, images: int) -> hd.sr.ContainerContentItem:
    verdict, counts = study.verdict(), study.counts()
    if verdict.scope:
        summary = f"Study verdict: {OUT_OF_SCOPE}, no image in scope ({verdict.scope})."
    else:
        summary = (
            f"Study verdict: {verdict.label}, the largest probability of pneumonia among the images in scope, "
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
    """The reports in a folder after `write_reports`: every one's path, and how many were new or changed."""

    paths: list[Path]
    new: int
    not_dicom: int  # files of the results that are not DICOM (or cannot be read as one now): no report
    studies_without_report: int  # DICOM studies none of whose images has a probability


def write_reports(studies: Sequence[Study], folder: Path) -> Written:
    """One report file per DICOM study with a scored image, FOLDER/<StudyInstanceUID>.dcm; a file that holds the same report stays."""
    paths, new, without = [], 0, 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for study in studies:
            report = build_report(study)
            if report is None:
                without += study.grouped_by == BY_STUDY
                continue
            path = folder / report.file_name
            if _holds(path, report.sop_instance_uid):
                paths.append(path)
                continue
            temporary = path.with_name(path.name + ".tmp")
            report.dataset.save_as(temporary, enforce_file_format=True)
            temporary.replace(path)
            paths.append(path)
            new += 1
    except OSError as error:
        raise ResultsWriteError(f"cannot write structured reports into {folder}: {error.strerror or error}") from None
    not_dicom = sum(f.header is None for study in studies for f in study.files)
    return Written(paths, new, not_dicom, without)


def _holds(path: Path, sop_instance_uid: str) -> bool:
    import pydicom

    if not path.exists():
        return False
    try:
        return (
            str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
            == sop_instance_uid
        )
    except (OSError, ValueError, AttributeError):
        return False
