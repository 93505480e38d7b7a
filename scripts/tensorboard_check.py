"""Load a cta2mbf run's TensorBoard events with TensorBoard's own reader and print what it
found as JSON: scalar tags with their step counts and last values, image tags with sizes,
histogram tags with their step counts and last histogram (min, max, count, sum, bucket counts).
Usage: python tensorboard_check.py RUN_DIR/tb"""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator


def main():
    acc = event_accumulator.EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    out = {"scalars": {}, "images": {}, "histograms": {}}
    for tag in tags["scalars"]:
        events = acc.Scalars(tag)
        out["scalars"][tag] = {"count": len(events), "steps": [e.step for e in events], "last": events[-1].value}
    for tag in tags["images"]:
        events = acc.Images(tag)
        e = events[-1]
        out["images"][tag] = {"count": len(events), "width": e.width, "height": e.height,
                              "png": e.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"}
    for tag in tags["histograms"]:
        events = acc.Histograms(tag)
        h = events[-1].histogram_value
        out["histograms"][tag] = {"count": len(events), "steps": [e.step for e in events], "min": h.min, "max": h.max,
                                  "num": h.num, "sum": h.sum, "bucket_limit": list(h.bucket_limit), "bucket": list(h.bucket)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
