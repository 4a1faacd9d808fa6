#pragma once
// Helpers for the man pages the programs generate from their own tables.

#include <string>
#include <string_view>

namespace voxd {

// roff text: a backslash is written \e, a hyphen \-, and a line may not start with . or '.
std::string roff(std::string_view text);
// The same, with `code` spans set in bold.
std::string roff_help(std::string_view text);

}  // namespace voxd
