#pragma once
// Durable file writes shared by the daemon's store and the tracker's registry.

#include <filesystem>
#include <string>
#include <string_view>

#include "voxd/common/error.hpp"

namespace voxd {

// Writes a file atomically: temp file in the same directory, fsync, rename, fsync the directory.
status write_file_atomic(const std::filesystem::path& path, std::string_view content);
status fsync_dir(const std::filesystem::path& dir);

// The whole content of a file. Errors (errc::io) name the file and the reason.
result<std::string> read_file(const std::filesystem::path& path);

// A secret kept in a file (a bearer token): the content without trailing newline or spaces.
// Errors name the file.
result<std::string> read_token_file(const std::filesystem::path& path);

}  // namespace voxd
