#include "voxd/common/error.hpp"

#include <cstring>

namespace voxd {

std::string_view to_string(errc code) {
  switch (code) {
    case errc::ok:
      return "ok";
    case errc::failure:
      return "failure";
    case errc::usage:
      return "usage";
    case errc::daemon_unreachable:
      return "daemon unreachable";
    case errc::permission_denied:
      return "permission denied";
    case errc::not_found:
      return "not found";
    case errc::download_failed:
      return "download failed";
    case errc::invalid_argument:
      return "invalid argument";
    case errc::protocol:
      return "protocol error";
    case errc::io:
      return "i/o error";
    case errc::config:
      return "configuration error";
    case errc::cancelled:
      return "cancelled";
    case errc::unavailable:
      return "unavailable";
    case errc::timed_out:
      return "timed out";
    case errc::no_space:
      return "no space";
  }
  return "unknown";
}

std::string errno_text(int err) {
  char buf[256];
  // GNU strerror_r returns the message pointer, which may or may not be buf.
  return ::strerror_r(err, buf, sizeof buf);
}

}  // namespace voxd
