// The Kotlin PieceSink interface, for check.sh.
package dev.edgespec;
public interface PieceSink { boolean onPiece(byte[] utf8); }
