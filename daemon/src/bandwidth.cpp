#include "voxd/daemon/bandwidth.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "voxd/common/files.hpp"

namespace voxd {

using json = nlohmann::json;

bool link_estimate::sample(clock::time_point now, double dt_s, std::uint64_t done, bool active) {
  if (!active) {
    samples_.clear();
  } else {
    samples_.emplace_back(now, done);
    while (samples_.size() > 2 && now - samples_[1].first >= window)
      samples_.pop_front();
  }
  double peak = peak_ * (1.0 - 0.01 * dt_s / 60.0);
  if (samples_.size() >= 2 && now - samples_.front().first >= window &&
      done >= samples_.front().second) {
    const double secs = std::chrono::duration<double>(now - samples_.front().first).count();
    peak = std::max(peak, static_cast<double>(done - samples_.front().second) / secs);
  }
  const bool moved = std::abs(peak - peak_) > peak_ / 20 + 1;
  peak_ = peak;
  return moved;
}

bandwidth::bandwidth(const config& cfg, std::string settings_file)
    : file_(std::move(settings_file)),
      configured_link_(cfg.link),
      lan_uncapped_(cfg.lan_uncapped),
      download_(cfg.download_cap),
      upload_(cfg.upload_cap) {}

void bandwidth::load() {
  if (!std::filesystem::exists(file_)) return;
  const json doc = json::parse(read_file(file_).value_or(""), nullptr, false);
  if (!doc.is_object() || !doc.contains("download_cap") || !doc["download_cap"].is_string()) {
    spdlog::warn("{} is unreadable; using the configured caps", file_);
    return;
  }
  if (auto r = parse_rate(doc["download_cap"].get<std::string>(), false)) download_ = *r;
  if (doc.contains("upload_cap") && doc["upload_cap"].is_string())
    if (auto r = parse_rate(doc["upload_cap"].get<std::string>(), true)) upload_ = *r;
  if (doc.contains("link_peak") && doc["link_peak"].is_number())
    link_ = link_estimate(std::max(0.0, doc["link_peak"].get<double>()));
}

void bandwidth::save() const {
  json doc{{"version", 1},
           {"download_cap", to_string(download_)},
           {"upload_cap", to_string(upload_)},
           {"link_peak", link_.peak()}};
  if (auto s = write_file_atomic(file_, doc.dump(1)); !s)
    spdlog::error("saving settings: {}", s.err().message);
}

void bandwidth::attach(sinks s) {
  sinks_ = std::move(s);
  if (sinks_.download) sinks_.download(download_.bytes_per_second);
  apply_upload(true);
}

void bandwidth::set_download_cap(const rate_spec& r) {
  download_ = r;
  if (sinks_.download) sinks_.download(download_.bytes_per_second);
  spdlog::info("download cap is now {}", to_string(download_));
  save();
}

void bandwidth::set_upload_cap(const rate_spec& r) {
  upload_ = r;
  apply_upload(false);
  spdlog::info("upload cap is now {}", to_string(upload_));
  save();
}

void bandwidth::reconfigure(const config& running, const config& next) {
  if (next.download_cap != running.download_cap) {
    download_ = next.download_cap;
    if (sinks_.download) sinks_.download(download_.bytes_per_second);
  }
  if (next.upload_cap != running.upload_cap) upload_ = next.upload_cap;
  configured_link_ = next.link;
  apply_upload(true);  // the link may have changed
  save();
}

void bandwidth::sample(link_estimate::clock::time_point now, double dt_s, std::uint64_t done,
                       bool active) {
  // Under a download cap the rate shows the cap, not the link.
  if (link_.sample(now, dt_s, done, active && download_.bytes_per_second == 0)) save();
  apply_upload(false);
}

double bandwidth::link_rate() const {
  if (configured_link_ > 0) return static_cast<double>(configured_link_);
  return link_.peak() > 0 ? link_.peak() : 125e6;
}

std::uint64_t bandwidth::upload_bytes_per_second() const {
  switch (upload_.type) {
    case rate_spec::kind::off:
      return 0;
    case rate_spec::kind::bytes_per_second:
      return upload_.bytes_per_second;
    case rate_spec::kind::percent:
      return std::max<std::uint64_t>(
          1, static_cast<std::uint64_t>(link_rate() * upload_.percent / 100.0));
  }
  return 0;
}

void bandwidth::apply_upload(bool force) {
  if (!sinks_.upload) return;
  const auto cap = upload_bytes_per_second();
  // Re-applied only on a real change: a measured link moves a little every second.
  if (!force && upload_applied_ != ~0ull && cap != 0 && upload_applied_ != 0 &&
      std::abs(static_cast<double>(cap) - static_cast<double>(upload_applied_)) <
          static_cast<double>(upload_applied_) / 20)
    return;
  if (!force && cap == upload_applied_) return;
  upload_applied_ = cap;
  sinks_.upload(cap);
}

json bandwidth::limits_json(bool have_peers, double download_rate, double upload_rate) const {
  return json{
      {"download", to_string(download_)},
      {"download_bytes_per_second", download_.bytes_per_second},
      {"upload", to_string(upload_)},
      {"upload_bytes_per_second", have_peers ? upload_bytes_per_second() : 0},
      {"link", configured_link_ > 0 ? to_string(rate_spec::absolute(configured_link_)) : "auto"},
      {"link_bytes_per_second", link_rate()},
      {"lan_uncapped", lan_uncapped_},
      {"download_rate", download_rate},
      {"upload_rate", upload_rate}};
}

}  // namespace voxd
