"""The portal mock's catalogues: agencies, fields (lĩnh vực) and procedures, in wire shape.

The codes are invented but shaped like the portal's: agency codes ``H12.01``, procedure codes
``1.004227``. Procedures use the upper-case keys the portal's sharing services answer with
(``MATTHC``, ``TENTTHC``, ``LINHVUCTHUCHIEN`` ...).
"""

from __future__ import annotations

from typing import Any

__all__ = ["agencies", "fields", "procedures"]


def agencies() -> dict[str, str]:
    """Agency code (madonvi, DonViXuLy) -> name (LayDanhMucCoQuan)."""
    return {
        "H12": "Ủy ban nhân dân tỉnh",
        "H12.01": "Trung tâm Phục vụ hành chính công tỉnh",
        "H12.22": "Sở Tài nguyên và Môi trường",
        "G12.34": "Văn phòng Đăng ký đất đai tỉnh",
        "H12.30": "Sở Tư pháp",
        "H12.40": "Sở Kế hoạch và Đầu tư",
    }


def fields() -> dict[str, str]:
    """Field code (MaLinhVuc) -> name (LayDanhMucLinhVuc)."""
    return {
        "DDAI": "Đất đai",
        "HTICH": "Hộ tịch",
        "DKKD": "Thành lập và hoạt động của doanh nghiệp",
        "XDUNG": "Hoạt động xây dựng",
    }


def procedures() -> list[dict[str, Any]]:
    """Every procedure of the catalogue, as LayThuTuc answers it."""
    return [
        {
            "MATTHC": "1.004227",
            "TENTTHC": (
                "Đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản gắn liền với đất"
            ),
            "CAPTHUCHIEN": "Cấp Tỉnh",
            "LINHVUCTHUCHIEN": [{"MALINHVUC": "DDAI", "TENLINHVUC": "Đất đai"}],
            "COQUANTHUCHIEN": [{"MADONVI": "G12.34", "TENDONVI": "Văn phòng Đăng ký đất đai tỉnh"}],
            "CACHTHUCTHUCHIEN": [
                {
                    "KENH": "1",
                    "THOIGIAN": [
                        {
                            "THOIGIANGIAIQUYET": 10,
                            "DONVITINH": "Ngày làm việc",
                            "MOTA": "Kể từ ngày nhận đủ hồ sơ hợp lệ",
                            "PHILEPHI": [
                                {"SOTIEN": 50000, "DONVI": "Đồng", "MOTA": "Lệ phí đăng ký"},
                                {"SOTIEN": 300000, "DONVI": "Đồng", "MOTA": "Phí thẩm định"},
                            ],
                        }
                    ],
                },
                {
                    "KENH": "2",
                    "THOIGIAN": [
                        {
                            "THOIGIANGIAIQUYET": 10,
                            "DONVITINH": "Ngày làm việc",
                            "MOTA": "Nộp trực tuyến trên Cổng Dịch vụ công",
                            "PHILEPHI": [
                                {"SOTIEN": 50000, "DONVI": "Đồng", "MOTA": "Lệ phí đăng ký"}
                            ],
                        }
                    ],
                },
            ],
            "KETQUATHUCHIEN": [
                {
                    "MAKETQUA": "KQ.1.004227",
                    "TENKETQUA": "Giấy chứng nhận quyền sử dụng đất đã được xác nhận thay đổi",
                }
            ],
            "YEUCAU": "Không",
            "MOTADOITUONGTHUCHIEN": "Công dân Việt Nam, tổ chức, doanh nghiệp",
        },
        {
            "MATTHC": "1.001193",
            "TENTTHC": "Thủ tục đăng ký khai sinh",
            "CAPTHUCHIEN": "Cấp Xã",
            "LINHVUCTHUCHIEN": [{"MALINHVUC": "HTICH", "TENLINHVUC": "Hộ tịch"}],
            "COQUANTHUCHIEN": [{"MADONVI": "H12.30", "TENDONVI": "Sở Tư pháp"}],
            "CACHTHUCTHUCHIEN": [
                {
                    "KENH": "1",
                    "THOIGIAN": [
                        {
                            "THOIGIANGIAIQUYET": 1,
                            "DONVITINH": "Ngày làm việc",
                            "MOTA": "Ngay trong ngày tiếp nhận",
                            "PHILEPHI": [{"SOTIEN": 0, "DONVI": "Đồng", "MOTA": "Miễn lệ phí"}],
                        }
                    ],
                }
            ],
            "KETQUATHUCHIEN": [{"MAKETQUA": "KQ.1.001193", "TENKETQUA": "Giấy khai sinh"}],
            "YEUCAU": "Không",
            "MOTADOITUONGTHUCHIEN": "Công dân Việt Nam",
        },
        {
            "MATTHC": "2.001610",
            "TENTTHC": "Đăng ký thành lập doanh nghiệp tư nhân",
            "CAPTHUCHIEN": "Cấp Tỉnh",
            "LINHVUCTHUCHIEN": [
                {"MALINHVUC": "DKKD", "TENLINHVUC": "Thành lập và hoạt động của doanh nghiệp"}
            ],
            "COQUANTHUCHIEN": [{"MADONVI": "H12.40", "TENDONVI": "Sở Kế hoạch và Đầu tư"}],
            "CACHTHUCTHUCHIEN": [
                {
                    "KENH": "2",
                    "THOIGIAN": [
                        {
                            "THOIGIANGIAIQUYET": 3,
                            "DONVITINH": "Ngày làm việc",
                            "MOTA": "Kể từ ngày nhận đủ hồ sơ hợp lệ",
                            "PHILEPHI": [
                                {"SOTIEN": 50000, "DONVI": "Đồng", "MOTA": "Lệ phí đăng ký"}
                            ],
                        }
                    ],
                }
            ],
            "KETQUATHUCHIEN": [
                {"MAKETQUA": "KQ.2.001610", "TENKETQUA": "Giấy chứng nhận đăng ký doanh nghiệp"}
            ],
            "YEUCAU": "Không",
            "MOTADOITUONGTHUCHIEN": "Tổ chức, cá nhân",
        },
    ]
