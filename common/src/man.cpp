#include "voxd/common/man.hpp"

namespace voxd {

std::string roff(std::string_view text) {
  std::string out;
  for (char ch : text) {
    if (ch == '\\')
      out += "\\e";
    else if (ch == '-')
      out += "\\-";
    else
      out += ch;
  }
  if (!out.empty() && (out.front() == '.' || out.front() == '\'')) out.insert(0, "\\&");
  return out;
}

std::string roff_help(std::string_view text) {
  std::string out;
  bool bold = false;
  for (char ch : roff(text)) {
    if (ch == '`') {
      out += bold ? "\\fR" : "\\fB";
      bold = !bold;
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace voxd
