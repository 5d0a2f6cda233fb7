"""GStreamer RTSP server for the live-source tests (Debian's gir1.2-gst-rtsp-server-1.0 + python3-gi).

Mount /camN (N = 0..COUNT-1) serves the H.264 RTP that a publisher sends to UDP port BASE+N (ffmpeg -f rtp),
so a test's ffmpeg publisher is the camera and this server the RTSP front of it, as with a real NVR.
Run with the system python3: python3 rtsp_server.py PORT UDP_BASE COUNT
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

_RTP_H264 = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96"


def main() -> None:
    port, base, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    mounts = server.get_mount_points()
    for n in range(count):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f'( udpsrc port={base + n} address=127.0.0.1 caps="{_RTP_H264}" '
            "! rtph264depay ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        factory.set_shared(True)
        mounts.add_factory(f"/cam{n}", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp server: cannot listen on 127.0.0.1:{port}")
    print(
        f"rtsp server on rtsp://127.0.0.1:{port}/cam0..{count - 1} (udp {base}..{base + count - 1})",
        flush=True,
    )
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
