/* Test-only stand-in for the Arduino core: just what a Nanofactory sketch calls, on the host. */
#ifndef ARDUINO_STUB_H
#define ARDUINO_STUB_H

#include <cstdint>
#include <cstdio>
#include <ctime>

struct SerialStub {
  void begin(unsigned long) {}
  explicit operator bool() const { return true; }
  void print(const char *s) { std::fputs(s, stdout); }
  void print(int v) { std::printf("%d", v); }
  void print(unsigned long v) { std::printf("%lu", v); }
  void println(const char *s) { std::printf("%s\n", s); }
  void println(int v) { std::printf("%d\n", v); }
  void println(unsigned long v) { std::printf("%lu\n", v); }
};
static SerialStub Serial;

static unsigned long micros() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (unsigned long)(t.tv_sec * 1000000L + t.tv_nsec / 1000);
}
static unsigned long millis() { return micros() / 1000; }

#endif
