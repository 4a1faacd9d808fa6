#pragma once
// One error policy for voxd: expected failures are values (error / result<T>); exceptions are
// only thrown at startup. The same errc is the JSON-RPC error code and the CLI exit status.

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace voxd {

enum class errc : int {
  ok = 0,
  failure = 1,             // anything not covered below
  usage = 2,               // bad command line
  daemon_unreachable = 3,  // no daemon at the socket, or it stopped answering
  permission_denied = 4,   // the socket or a file refused us
  not_found = 5,           // unknown model, repository or file
  download_failed = 6,     // no origin could supply a verified copy
  invalid_argument = 7,    // a parameter that cannot be right (rate, revision, ...)
  protocol = 8,            // malformed or unexpected control message
  io = 9,                  // local disk or socket error
  config = 10,             // configuration file is invalid
  cancelled = 11,          // the model was removed while a client waited for it
  unavailable = 12,        // origins out of reach for now (network, 5xx, 429): worth retrying
  timed_out = 13,          // `voxd add --timeout` passed before the model was complete
  no_space = 14,           // the store's disk or budget cannot hold a model's files for now
};

std::string_view to_string(errc code);

struct error {
  errc code = errc::failure;
  std::string message;
};

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  result(error e) : v_(std::move(e)) {}      // NOLINT(google-explicit-constructor)

  explicit operator bool() const { return v_.index() == 0; }
  bool has_value() const { return v_.index() == 0; }
  T& value() & { return std::get<0>(v_); }
  T const& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  T const& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  T const* operator->() const { return &value(); }
  T value_or(T fallback) const& { return has_value() ? value() : std::move(fallback); }
  const error& err() const { return std::get<1>(v_); }

 private:
  std::variant<T, error> v_;
};

struct ok_t {};
using status = result<ok_t>;
inline status ok() {
  return ok_t{};
}

inline error make_error(errc code, std::string message) {
  return error{code, std::move(message)};
}

// errno text, thread-safe.
std::string errno_text(int err);

}  // namespace voxd
