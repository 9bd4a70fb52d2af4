import pandas as pd
import pytest

from leadscore.data.titles import department_from_title, seniority_from_title

CASES = [
    ("CEO", "c_level", "executive"),
    ("代表取締役社長", "c_level", "executive"),
    ("VP Engineering", "vp", "engineering"),
    ("執行役員", "vp", "other"),
    ("Director of Marketing", "director", "marketing"),
    ("営業部 部長", "director", "sales"),
    ("Head of Data", "director", "engineering"),
    ("情報システム部 課長", "manager", "it"),
    ("Marketing Manager", "manager", "marketing"),
    ("Software Engineer", "individual", "engineering"),
    ("Systems Analyst", "individual", "it"),
    ("Intern", "intern", "other"),
    ("インターン", "intern", "other"),
    ("Looking for opportunities", "intern", "other"),
    ("Student", "student", "education"),
    ("大学院生", "student", "education"),
    ("", "unknown", "unknown"),
    (None, "unknown", "unknown"),
    ("Wizard of Light", "unknown", "other"),
    ("Vice President", "vp", "other"),
    ("Senior Vice-President, Sales", "vp", "sales"),
    ("President", "c_level", "executive"),
    ("ＶＰ　マーケティング", "vp", "marketing"),  # full-width Latin and space
    ("ｲﾝﾀｰﾝ", "intern", "other"),  # half-width katakana
    ("ｴﾝｼﾞﾆｱ", "individual", "engineering"),
]


@pytest.mark.parametrize(("title", "seniority", "department"), CASES)
def test_title_mapping(title: str | None, seniority: str, department: str) -> None:
    titles = pd.Series([title], dtype="str")
    assert seniority_from_title(titles).iloc[0] == seniority
    assert department_from_title(titles).iloc[0] == department


def test_mapping_keeps_index_and_length() -> None:
    titles = pd.Series(["CEO", None, "CEO"], index=[10, 20, 30], dtype="str")
    out = seniority_from_title(titles)
    assert list(out.index) == [10, 20, 30]
    assert out.tolist() == ["c_level", "unknown", "c_level"]
